// Package dscp holds the Differentiated Services code points (RFC 2474) the
// router marks each media kind with, and the socket plumbing to set and read
// them: per-socket IP_TOS / IPV6_TCLASS, per-packet control messages for
// sendmsg(2), and IP_RECVTOS / IPV6_RECVTCLASS parsing for receivers.
package dscp

import (
	"fmt"

	"github.com/openmmr/mmr/media"
)

// Standard code points used by the defaults (RFC 4594 names).
const (
	EF   = 46 // Expedited Forwarding (RFC 3246): interactive audio
	AF41 = 34 // Assured Forwarding class 4, low drop: interactive video
	AF42 = 36 // class 4, medium drop: screen share, less urgent than camera video
)

// Config is the DSCP of each media kind. A value of 0 leaves that kind's
// packets unmarked (best effort). Config is a plain value, safe to copy.
type Config struct {
	Audio, Video, Content uint8
}

// Default returns the RFC 8837 §5 marking for interactive real-time media:
// audio EF (46), video AF41 (34), content AF42 (36). Zoom's own defaults are
// 56/40/40; set them explicitly if a network is provisioned for those.
func Default() Config { return Config{Audio: EF, Video: AF41, Content: AF42} }

// Validate reports a code point outside the 6-bit DSCP range.
func (c Config) Validate() error {
	for _, k := range media.Kinds {
		if v := c.For(k); v > 63 {
			return fmt.Errorf("dscp: %s code point %d is out of range 0..63", k, v)
		}
	}
	return nil
}

// For returns the code point of kind k (0 for an invalid kind).
func (c Config) For(k media.Kind) uint8 {
	switch k {
	case media.Audio:
		return c.Audio
	case media.Video:
		return c.Video
	case media.Content:
		return c.Content
	}
	return 0
}

// TOS returns the IPv4 TOS / IPv6 traffic-class byte that carries code
// point d: the DSCP occupies the upper six bits, ECN the lower two (RFC 3168),
// which the kernel manages and which are left 0 here.
func TOS(d uint8) int { return int(d) << 2 }

// FromTOS extracts the DSCP from a TOS / traffic-class byte.
func FromTOS(tos int) uint8 { return uint8(tos>>2) & 0x3f }
