//go:build unix

package server

import "syscall"

// restrictUmask makes every file and directory the process creates from
// now on private to its user (umask 077), and returns the previous umask.
func restrictUmask() int { return syscall.Umask(0o077) }
