package daemon

import "syscall"

const syscallNoFollow = syscall.O_NOFOLLOW
