package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// gsoCounter is a forwarder that counts UDP GSO super-packets and
// fallbacks (the router).
type gsoCounter interface {
	GSO() (sent, fallbacks uint64)
}

// GSO returns the router's GSO super-packets sent and runs that fell back.
func (f *mmrForwarder) GSO() (sent, fallbacks uint64) {
	s := f.r.Stats()
	return s.GSOSent, s.GSOFallbacks
}

// gsoReply answers the child's "gso" request: "gso <sent> <fallbacks>".
func (c *childServer) gsoReply() {
	g, ok := c.fw.(gsoCounter)
	if !ok {
		c.write("err no GSO counters")
		return
	}
	sent, falls := g.GSO()
	c.write("gso " + strconv.FormatUint(sent, 10) + " " + strconv.FormatUint(falls, 10))
}

// gso reads the router's GSO counters (router impls).
func (c *child) gso() (sent, fallbacks uint64, err error) {
	reply, err := c.request("gso", controlTimeout)
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(reply)
	if len(f) == 3 && f[0] == "gso" {
		sent, err1 := strconv.ParseUint(f[1], 10, 64)
		falls, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 == nil && err2 == nil {
			return sent, falls, nil
		}
	}
	return 0, 0, c.fail(fmt.Errorf("bench: bad gso reply %q", reply))
}
