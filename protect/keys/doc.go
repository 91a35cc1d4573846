// Package keys implements openmmr's meeting-key schedules as pure state
// machines without I/O or clocks of their own (every method takes now):
//
//   - Ring: what a client does with the meeting keys it receives, in both
//     modes: install a key for receiving at once, switch the send key after
//     SwitchDelay, drop the keys it replaced RetireDelay later, never hold
//     more than MaxKeys. Its Actions drive a protect.Sealer and
//     protect.Opener (Apply).
//   - Standard: the control server's side of Standard mode: one meeting key
//     handed to every participant at join, a new one (next KeyID) when the
//     membership changes, changes within Coalesce merged into one re-key.
//   - Group: one client's side of E2EE mode: X25519 key pairs announced
//     through the roster, the deterministic leader rule, the leader's
//     re-keys on every join, leave and every RekeyInterval, key wraps
//     (ECDH + HKDF-SHA-256 + AES-256-GCM, KeyWrap) checked against the
//     roster, and the security code.
//
// The messages (KeyWrap, MediaKey, the public-key field) are specified in
// docs/PROTOCOL.md, "Media protection (SRTP AEAD-GCM) and meeting keys".
// Every type here is a plain state machine: not safe for concurrent use
// (the owner serialises calls, typically on its control-channel goroutine);
// decoders never panic and keep no reference to their input.
package keys
