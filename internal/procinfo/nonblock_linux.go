package procinfo

import "syscall"

const syscallNonblock = syscall.O_NONBLOCK
