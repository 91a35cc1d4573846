package tunnel

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cpuOf returns the CPU time of process pid in nanoseconds: the sum of
// /proc/PID/task/*/schedstat over its threads (nanosecond resolution; a Go
// process keeps its threads, so none is lost to an exit).
func cpuOf(pid int) (int64, error) {
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	if err != nil || len(tasks) == 0 {
		return 0, os.ErrNotExist
	}
	var sum int64
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // a thread that just exited
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			v, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			sum += v
		}
	}
	return sum, nil
}
