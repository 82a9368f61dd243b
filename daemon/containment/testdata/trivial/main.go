// Command trivial is the benchmarks' baseline: the least a static Go program can do inside
// the same sandbox. With no argument it exits at once; with "sleep" it idles.
package main

import (
	"os"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "sleep" {
		time.Sleep(24 * time.Hour)
	}
}
