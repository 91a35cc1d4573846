//go:build !linux

package webclient

import (
	"errors"
	"net"
	"testing"
)

// netns: network namespaces are Linux only; browsers run in the host's
// network.
type netns struct{}

func loopbackNetns(t *testing.T) (*netns, string) { return nil, "network namespaces are Linux only" }

func (n *netns) listenTCP(int) (net.Listener, error)   { return nil, errors.ErrUnsupported }
func (n *netns) listenUDP(int) (net.PacketConn, error) { return nil, errors.ErrUnsupported }
func (n *netns) wrap(browser string) string            { return browser }
func (n *netns) dropUDP(int) error                     { return errors.ErrUnsupported }
