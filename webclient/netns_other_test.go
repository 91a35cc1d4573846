//go:build !linux

package webclient

import (
	"net"
	"testing"
)

// loopbackNetns: network namespaces are Linux only; browsers run in the
// host's network.
func loopbackNetns(t *testing.T) (net.Listener, func(string) string, string) {
	return nil, nil, "network namespaces are Linux only"
}
