package webclient

import (
	"crypto/sha256"

	"github.com/openmmr/mmr/protect"
)

// DevKeyLabel prefixes the meeting ID in DevMeetingKey.
const DevKeyLabel = "openmmr/1 INSECURE development meeting key "

// DevMeetingKey returns the PLACEHOLDER meeting key the web client seals
// media with until the control channel hands out meeting keys (issue 10):
// key ID 1, secret SHA-256(DevKeyLabel || meeting ID). Anyone who knows the
// meeting ID can compute it: it exercises the real SRTP transform and packet
// format (docs/PROTOCOL.md "Media protection") so that the integration only
// changes where the key comes from, and it is NOT SECURE. A native client
// that wants to exchange media with today's web client uses it too.
func DevMeetingKey(meeting string) protect.MeetingKey {
	return protect.MeetingKey{ID: 1, Secret: sha256.Sum256([]byte(DevKeyLabel + meeting))}
}
