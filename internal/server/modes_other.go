//go:build !unix

package server

// restrictUmask does nothing where there is no umask.
func restrictUmask() int { return 0 }
