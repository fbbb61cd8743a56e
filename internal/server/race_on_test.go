//go:build race

package server_test

// raceEnabled: the test binary is built with -race.
const raceEnabled = true
