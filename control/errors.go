package control

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// bindError explains a failed bind and names the flag that picks another
// address. It wraps err.
func bindError(addr string, err error) error {
	const hint = "choose another address with the -control flag, e.g. -control 127.0.0.1:8443"
	switch {
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("control: cannot listen on %s: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE); %s: %w", addr, hint, err)
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("control: cannot listen on %s: address already in use by another process; %s: %w", addr, hint, err)
	}
	return fmt.Errorf("control: cannot listen on %s; %s: %w", addr, hint, err)
}

// isTemporary reports accept errors worth retrying: out of file descriptors
// or kernel memory, or a connection aborted before it was accepted.
func isTemporary(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}
