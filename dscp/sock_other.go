//go:build !linux

package dscp

import (
	"errors"
	"syscall"
)

// Set is not implemented off Linux; packets leave unmarked.
func Set(c syscall.Conn, d uint8) error { return errors.ErrUnsupported }

// EnableRecv is not implemented off Linux.
func EnableRecv(c syscall.Conn) error { return errors.ErrUnsupported }

// ParseRecv is not implemented off Linux.
func ParseRecv(oob []byte) (uint8, bool) { return 0, false }

// Get is not implemented off Linux.
func Get(c syscall.Conn, v6 bool) (uint8, error) { return 0, errors.ErrUnsupported }
