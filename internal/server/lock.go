package server

import "errors"

// lockFile is the file in the data directory that one vaultd at a time
// holds locked (flock) from the start of Open to the end of Close.
const lockFile = "LOCK"

// ErrDataDirLocked is Open's error when another vaultd has the data
// directory: it is returned before anything else is opened or started
// (no broker, no listener, no key or store touched).
var ErrDataDirLocked = errors.New("data directory locked")
