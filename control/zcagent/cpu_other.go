//go:build !unix

package zcagent

import "time"

// processCPU is unavailable here: the agent reports CPU 0 unless
// Config.CPU is set.
func processCPU() (time.Duration, bool) { return 0, false }
