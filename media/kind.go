// Package media names the three media kinds an MMR routes. It is the one
// vocabulary shared by the wire format, DSCP marking, sessions and the router.
package media

import "fmt"

// Kind is a media kind. Its numeric value is the one carried on the wire
// (docs/PROTOCOL.md); the zero value is invalid. Kind is a plain value and
// safe for concurrent use.
type Kind uint8

// The media kinds, in wire order.
const (
	Audio   Kind = 1 // voice
	Video   Kind = 2 // camera video
	Content Kind = 3 // screen share
)

// NumKinds is the number of media kinds; arrays indexed by Kind.Index have this length.
const NumKinds = 3

// Kinds lists every valid kind in wire order.
var Kinds = [NumKinds]Kind{Audio, Video, Content}

// Valid reports whether k is one of Audio, Video, Content.
func (k Kind) Valid() bool { return k >= Audio && k <= Content }

// Index returns k as a zero-based array index (Audio=0). k must be valid.
func (k Kind) Index() int { return int(k) - 1 }

// String returns "audio", "video", "content", or "kind(N)".
func (k Kind) String() string {
	switch k {
	case Audio:
		return "audio"
	case Video:
		return "video"
	case Content:
		return "content"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind is the inverse of String for valid kinds.
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds {
		if k.String() == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("media: unknown kind %q (want audio, video or content)", s)
}
