package cli

import (
	"fmt"
	"os"

	"github.com/ironclaw/ironclaw/daemon"
	"golang.org/x/sys/unix"
)

// readHidden prompts on tty and reads a line with echo turned off.
func readHidden(tty *os.File, prompt string) (string, error) {
	fd := int(tty.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", fmt.Errorf("reading terminal settings: %w", err)
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", fmt.Errorf("turning terminal echo off: %w", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprint(tty, prompt)
	line, err := daemon.ReadLine(tty)
	fmt.Fprintln(tty)
	return line, err
}
