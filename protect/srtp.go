package protect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/transport/v5/replaydetector"
)

// Profile is the only SRTP protection profile openmmr uses.
const Profile = srtp.ProtectionProfileAeadAes256Gcm

// Rejection reasons returned by Open (each counted in Stats), unwrapped
// sentinels: compare with == or errors.Is.
var (
	ErrMalformed     = errors.New("protect: malformed packet")
	ErrUnknownSender = errors.New("protect: unknown sender")
	ErrUnknownKey    = errors.New("protect: unknown key ID")
	ErrAuth          = errors.New("protect: authentication failed")
	ErrReplayed      = errors.New("protect: replayed packet")
	ErrTooOld        = errors.New("protect: packet older than the replay window")
)

// Defaults and limits of OpenerConfig and SealerConfig.
const (
	// DefaultReplayWindow is 512 packets: RFC 3711 §3.3.2 asks for at least
	// 64; video sends bursts of tens of packets per frame and paths
	// (especially with the TCP fallback reconnecting) reorder by more than
	// 64, while 512 bits is only 64 bytes per stream.
	DefaultReplayWindow = 512
	// MaxReplayWindow bounds the window (and its memory).
	MaxReplayWindow = 1 << 15
	// DefaultMaxKeys is how many meeting keys an Opener holds at once: the
	// current one, the next one arriving before the senders switch, and the
	// previous one while packets sealed under it are in flight, plus one
	// spare for a change that comes right after another.
	DefaultMaxKeys = 4
	// DefaultMaxStreams bounds the SSRCs of an Opener (senders of the
	// meeting) and of a Sealer (own SSRCs: audio, simulcast layers, content).
	DefaultMaxStreams = 1024
)

// OpenerConfig configures an Opener. The zero value means the defaults.
type OpenerConfig struct {
	ReplayWindow int // packets; 0: DefaultReplayWindow
	MaxKeys      int // live keys; 0: DefaultMaxKeys
	MaxSenders   int // registered SSRCs; 0: DefaultMaxStreams
}

func (c *OpenerConfig) validate() error {
	if c.ReplayWindow == 0 {
		c.ReplayWindow = DefaultReplayWindow
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	if c.MaxSenders == 0 {
		c.MaxSenders = DefaultMaxStreams
	}
	if c.ReplayWindow < 64 || c.ReplayWindow > MaxReplayWindow {
		return fmt.Errorf("protect: replay window %d outside 64..%d", c.ReplayWindow, MaxReplayWindow)
	}
	if c.MaxKeys < 1 || c.MaxSenders < 1 {
		return errors.New("protect: MaxKeys and MaxSenders must be positive")
	}
	return nil
}

func contextOptions(id KeyID, window int, rej *uint8) []srtp.ContextOption {
	return []srtp.ContextOption{
		srtp.MasterKeyIndicator(mki(id)),
		srtp.SRTPReplayDetectorFactory(func() replaydetector.ReplayDetector { return newReplayWindow(window, rej) }),
		srtp.SRTCPReplayDetectorFactory(func() replaydetector.ReplayDetector { return newReplayWindow(window, rej) }),
	}
}

// Sealer protects the RTP packets of one participant (all its SSRCs) under
// the current meeting key: SRTP AEAD_AES_256_GCM with the sender key of
// DeriveSender(key, Sender{participant, SSRC}) and the KeyID as 4-byte MKI.
// Safe for concurrent use (a mutex). See the package doc for buffers.
type Sealer struct {
	participant uint64
	maxStreams  int

	mu      sync.Mutex
	key     MeetingKey
	streams map[uint32]*sealStream
	c       counters
}

type sealStream struct {
	ctx *srtp.Context
	hdr rtp.Header
	id  KeyID
	rej uint8 // unused on the sending side; the factory needs a home
}

// NewSealer returns a Sealer for participant with no key yet (Seal fails
// with ErrNoKey until SetKey). maxStreams 0 means DefaultMaxStreams.
func NewSealer(participant uint64, maxStreams int) *Sealer {
	if maxStreams <= 0 {
		maxStreams = DefaultMaxStreams
	}
	return &Sealer{participant: participant, maxStreams: maxStreams, streams: map[uint32]*sealStream{}}
}

// SetKey makes k the send key from the next packet on, for every SSRC. The
// SRTP rollover counters carry over (the IV stays unique per stream since
// every key gives every stream a fresh master key). Setting the current key
// again is a no-op; the same ID with another secret is ErrKeyConflict.
// Allocates (key derivation), never per packet.
func (s *Sealer) SetKey(k MeetingKey) error {
	if k.ID == 0 {
		return ErrKeyID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key.ID == k.ID {
		if s.key.Secret != k.Secret {
			return ErrKeyConflict
		}
		return nil
	}
	for ssrc, st := range s.streams {
		key, salt := DeriveSender(k, Sender{s.participant, ssrc})
		if err := st.ctx.AddCipherForMKI(mki(k.ID), key[:], salt[:]); err != nil {
			return err
		}
		if err := st.ctx.SetSendMKI(mki(k.ID)); err != nil {
			return err
		}
		if err := st.ctx.RemoveMKI(mki(st.id)); err != nil {
			return err
		}
		st.id = k.ID
	}
	s.key = k
	return nil
}

// KeyID returns the current send key's ID (0 before SetKey).
func (s *Sealer) KeyID() KeyID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key.ID
}

// Seal protects the RTP packet pkt (header in clear and authenticated,
// payload encrypted, then the 16-byte tag and the 4-byte MKI) into dst (see
// the package doc: written from dst[0], allocation-free when cap(dst) >=
// len(pkt)+Overhead; dst may be pkt[:0]). The first packet of a new SSRC
// creates its context (allocates once); at most maxStreams SSRCs.
func (s *Sealer) Seal(dst, pkt []byte) ([]byte, error) {
	if len(pkt) < 12 {
		s.c.sealErrors.Add(1)
		return nil, ErrMalformed
	}
	ssrc := binary.BigEndian.Uint32(pkt[8:12])
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key.ID == 0 {
		s.c.sealErrors.Add(1)
		return nil, ErrNoKey
	}
	st := s.streams[ssrc]
	if st == nil {
		var err error
		if st, err = s.newStream(ssrc); err != nil {
			s.c.sealErrors.Add(1)
			return nil, err
		}
	}
	out, err := st.ctx.EncryptRTP(dst, pkt, &st.hdr)
	if err != nil {
		s.c.sealErrors.Add(1)
		return nil, fmt.Errorf("protect: seal: %w", err) // header does not parse, or 2^48 packets under one key
	}
	s.c.sealed.Add(1)
	return out, nil
}

func (s *Sealer) newStream(ssrc uint32) (*sealStream, error) {
	if len(s.streams) >= s.maxStreams {
		return nil, ErrTooManySSRCs
	}
	st := &sealStream{id: s.key.ID}
	key, salt := DeriveSender(s.key, Sender{s.participant, ssrc})
	ctx, err := srtp.CreateContext(key[:], salt[:], Profile, contextOptions(s.key.ID, DefaultReplayWindow, &st.rej)...)
	if err != nil {
		return nil, err
	}
	st.ctx = ctx
	s.streams[ssrc] = st
	return st, nil
}

// Stats returns the Sealer's counters (Sealed, SealErrors). Safe for
// concurrent use; does not take the mutex.
func (s *Sealer) Stats() Stats { return s.c.snapshot() }

// Opener checks and decrypts the SRTP packets of the other participants'
// streams. It holds the live meeting keys (at most MaxKeys) and the
// registered senders (SSRC to participant, from the roster); for every
// sender it keeps one pion context holding one cipher per live key (picked
// by the packet's MKI) and one replay window. Safe for concurrent use (a
// mutex). See the package doc for buffers.
type Opener struct {
	cfg OpenerConfig

	mu      sync.Mutex
	keys    []MeetingKey
	streams map[uint32]*openStream
	c       counters
}

type openStream struct {
	sender  Sender
	ctx     *srtp.Context // nil while no key is live
	primary KeyID         // the key the context was created with (pion's "send MKI")
	ids     []KeyID
	hdr     rtp.Header
	rej     uint8
}

// NewOpener returns an Opener with no keys and no senders.
func NewOpener(cfg OpenerConfig) (*Opener, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Opener{cfg: cfg, streams: map[uint32]*openStream{}}, nil
}

// AddKey makes k live: packets under k.ID open from now on. Adding a live
// key again is a no-op; a live ID with another secret is ErrKeyConflict;
// a key beyond MaxKeys is ErrTooManyKeys (drop one first).
func (o *Opener) AddKey(k MeetingKey) error {
	if k.ID == 0 {
		return ErrKeyID
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, l := range o.keys {
		if l.ID == k.ID {
			if l.Secret != k.Secret {
				return ErrKeyConflict
			}
			return nil
		}
	}
	if len(o.keys) >= o.cfg.MaxKeys {
		return ErrTooManyKeys
	}
	for _, st := range o.streams {
		if err := o.addStreamKey(st, k); err != nil {
			return err
		}
	}
	o.keys = append(o.keys, k)
	return nil
}

func (o *Opener) addStreamKey(st *openStream, k MeetingKey) error {
	key, salt := DeriveSender(k, st.sender)
	if st.ctx == nil {
		ctx, err := srtp.CreateContext(key[:], salt[:], Profile, contextOptions(k.ID, o.cfg.ReplayWindow, &st.rej)...)
		if err != nil {
			return err
		}
		st.ctx, st.primary = ctx, k.ID
	} else if err := st.ctx.AddCipherForMKI(mki(k.ID), key[:], salt[:]); err != nil {
		return err
	}
	st.ids = append(st.ids, k.ID)
	return nil
}

// DropKey forgets key id: packets under it are rejected (ErrUnknownKey)
// from now on. Dropping a key that is not live is a no-op.
func (o *Opener) DropKey(id KeyID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := -1
	for j, l := range o.keys {
		if l.ID == id {
			i = j
		}
	}
	if i < 0 {
		return
	}
	o.keys = append(o.keys[:i], o.keys[i+1:]...)
	for _, st := range o.streams {
		o.dropStreamKey(st, id)
	}
}

func (o *Opener) dropStreamKey(st *openStream, id KeyID) {
	n := st.ids[:0]
	for _, x := range st.ids {
		if x != id {
			n = append(n, x)
		}
	}
	st.ids = n
	if len(st.ids) == 0 {
		// The replay state goes with the context: packets under the dropped
		// keys can no longer authenticate, and a later key is new to every
		// packet ever sent.
		st.ctx, st.primary = nil, 0
		return
	}
	if st.primary == id {
		st.primary = st.ids[0]
		_ = st.ctx.SetSendMKI(mki(st.primary)) // present: it is in ids
	}
	_ = st.ctx.RemoveMKI(mki(id)) // present, and no longer the primary
}

// Keys returns the IDs of the live keys, in the order they were added.
func (o *Opener) Keys() []KeyID {
	o.mu.Lock()
	defer o.mu.Unlock()
	ids := make([]KeyID, len(o.keys))
	for i, k := range o.keys {
		ids[i] = k.ID
	}
	return ids
}

// AddSender registers a stream of another participant (from the roster's
// streams). Registering it again is a no-op; an SSRC registered to another
// participant is moved to s with fresh state.
func (o *Opener) AddSender(s Sender) error {
	if s.SSRC == 0 {
		return ErrSSRC
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if st := o.streams[s.SSRC]; st != nil {
		if st.sender == s {
			return nil
		}
		delete(o.streams, s.SSRC)
	}
	if len(o.streams) >= o.cfg.MaxSenders {
		return ErrTooManySSRCs
	}
	st := &openStream{sender: s}
	for _, k := range o.keys {
		if err := o.addStreamKey(st, k); err != nil {
			return err
		}
	}
	o.streams[s.SSRC] = st
	return nil
}

// RemoveSender forgets the stream with this SSRC (its participant left or
// unpublished it).
func (o *Opener) RemoveSender(ssrc uint32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.streams, ssrc)
}

// Open checks and decrypts the SRTP packet pkt into dst (see the package
// doc: written from dst[0], allocation-free for an accepted packet when
// cap(dst) >= len(pkt); dst may be pkt[:0], but a rejected packet then
// leaves pkt's payload overwritten). It returns the RTP packet (header and
// plaintext payload, without tag and MKI), or one of ErrMalformed,
// ErrUnknownSender, ErrUnknownKey, ErrAuth, ErrReplayed, ErrTooOld, each
// counted in Stats. Rejections before the cryptography (malformed, unknown
// sender or key) do not allocate; pion/srtp allocates its error value for
// a replayed or too-old packet (1 allocation) and for a failed tag (4,
// a wrapped error), which TestRejectionAllocs measures.
func (o *Opener) Open(dst, pkt []byte) ([]byte, error) {
	if len(pkt) < 12+Overhead {
		o.c.malformed.Add(1)
		return nil, ErrMalformed
	}
	ssrc := binary.BigEndian.Uint32(pkt[8:12])
	o.mu.Lock()
	defer o.mu.Unlock()
	st := o.streams[ssrc]
	if st == nil {
		o.c.unknownSender.Add(1)
		return nil, ErrUnknownSender
	}
	if st.ctx == nil {
		o.c.unknownKey.Add(1)
		return nil, ErrUnknownKey
	}
	st.rej = rejNone
	out, err := st.ctx.DecryptRTP(dst, pkt, &st.hdr)
	if err != nil {
		return nil, o.c.reject(st.rej, err)
	}
	o.c.opened.Add(1)
	return out, nil
}

// reject maps a pion error (and the replay reason) to a counted sentinel.
func (c *counters) reject(rej uint8, err error) error {
	switch {
	case rej == rejReplayed:
		c.replayed.Add(1)
		return ErrReplayed
	case rej == rejTooOld:
		c.tooOld.Add(1)
		return ErrTooOld
	case errors.Is(err, srtp.ErrMKINotFound):
		c.unknownKey.Add(1)
		return ErrUnknownKey
	case errors.Is(err, srtp.ErrFailedToVerifyAuthTag):
		c.auth.Add(1)
		return ErrAuth
	}
	c.malformed.Add(1)
	return ErrMalformed
}

// Stats returns the Opener's counters. Safe for concurrent use; does not
// take the mutex.
func (o *Opener) Stats() Stats { return o.c.snapshot() }
