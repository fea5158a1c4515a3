//go:build !unix

package main

// raiseOpenFileLimit reports that the limit of open files is unknown.
func raiseOpenFileLimit() int { return 0 }
