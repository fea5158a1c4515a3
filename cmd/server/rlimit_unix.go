//go:build unix

package main

import "syscall"

// raiseOpenFileLimit raises the soft limit of open files to the hard one
// (the Go runtime does so at start on most systems; doing it here makes it
// explicit everywhere) and returns it; 0 when it cannot be read.
func raiseOpenFileLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	if r.Cur < r.Max {
		raised := r
		raised.Cur = r.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			r = raised
		}
	}
	return int(min(r.Cur, 1<<30))
}
