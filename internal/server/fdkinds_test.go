package server_test

import (
	"os"
	"path/filepath"
	"strings"
)

// brokerSegmentFDs counts the process's open fds on the embedded broker's
// tenant partition files: kfake keeps the active segment (.dat) and index
// (.idx) of every partition that has held a record open, two fds per such
// partition, whoever consumed and deleted its records.
func brokerSegmentFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.Contains(target, "/broker/partitions/tenant.") {
			n++
		}
	}
	return n
}
