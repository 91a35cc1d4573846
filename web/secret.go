package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/openmmr/mmr/web/store"
)

// Argon2id parameters for passcodes, host keys and panelist keys (RFC 9106;
// the OWASP minimum: 19 MiB, 2 passes, 1 lane): about 20-40 ms of one core
// per hash here, which bounds an attacker holding a stolen database to a
// few thousand guesses per core-minute, while a lookup with the right
// passcode pays it once per node (the verification cache below).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// Argon2Params are the cost parameters of new argon2id hashes (RFC 9106
// §3.1). Hashes record their parameters, so changing them later only
// affects new hashes.
type Argon2Params struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

// DefaultArgon2 returns the parameters above (OWASP's minimum for
// argon2id).
func DefaultArgon2() Argon2Params {
	return Argon2Params{Time: argonTime, MemoryKiB: argonMemory, Threads: argonThreads}
}

// HashSecret returns the PHC-format argon2id hash of secret with the
// default parameters ("$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH", unpadded
// standard base64).
func HashSecret(secret string) (string, error) { return HashSecretWith(DefaultArgon2(), secret) }

// HashSecretWith is HashSecret with parameters p.
func HashSecretWith(p Argon2Params, secret string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	h := argon2.IDKey([]byte(secret), salt, p.Time, p.MemoryKiB, p.Threads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads, enc.EncodeToString(salt), enc.EncodeToString(h)), nil
}

// errHash is a stored hash this package cannot read.
var errHash = errors.New("web: unreadable secret hash")

// VerifySecret reports whether secret matches hash (from HashSecret, with
// whatever parameters it records), in constant time.
func VerifySecret(hash, secret string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false, errHash
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m < 8 || m > 1<<22 || t < 1 || t > 16 || p < 1 {
		return false, errHash
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[4])
	want, err2 := enc.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) < 16 || len(want) > 64 {
		return false, errHash
	}
	got := argon2.IDKey([]byte(secret), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// verifier checks secrets against stored hashes, remembering recent
// successes so that a busy meeting's right passcode costs one argon2id per
// node, and bounding concurrent hashing (a flood of wrong passcodes queues
// instead of taking every core). Safe for concurrent use.
//
// The cache is coherent by construction: its key covers the stored hash,
// which changes (new salt) whenever the secret changes on any node. Keys are
// HMACs under a per-process random key, so the cache holds neither
// passcodes nor anything checkable against the database without that key.
type verifier struct {
	key  [32]byte
	sem  chan struct{}
	mu   sync.Mutex
	seen map[[32]byte]struct{}
}

// verifyCacheSize bounds the success cache (32 bytes a key): when full it
// is emptied, which costs one hash per active meeting.
const verifyCacheSize = 1 << 14

func newVerifier(parallel int) *verifier {
	v := &verifier{sem: make(chan struct{}, max(parallel, 1)), seen: map[[32]byte]struct{}{}}
	_, _ = rand.Read(v.key[:])
	return v
}

func (v *verifier) verify(hash, secret string) (bool, error) {
	mac := hmac.New(sha256.New, v.key[:])
	mac.Write([]byte(hash))
	mac.Write([]byte{0})
	mac.Write([]byte(secret))
	var k [32]byte
	mac.Sum(k[:0])
	v.mu.Lock()
	_, ok := v.seen[k]
	v.mu.Unlock()
	if ok {
		return true, nil
	}
	v.sem <- struct{}{}
	ok, err := VerifySecret(hash, secret)
	<-v.sem
	if ok {
		v.mu.Lock()
		if len(v.seen) >= verifyCacheSize {
			clear(v.seen)
		}
		v.seen[k] = struct{}{}
		v.mu.Unlock()
	}
	return ok, err
}

// APIKeyPrefix starts every admin API key, so that leaked keys are easy to
// find in logs and repositories.
const APIKeyPrefix = "omk_"

// NewAPIKey returns a new admin API key (256 random bits), its ID and the
// hash to store (hex SHA-256: the key's entropy makes a slow hash needless).
func NewAPIKey() (key, id, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", "", err
	}
	key = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b)
	return key, "key-" + hex.EncodeToString(b[:4]), HashAPIKey(key), nil
}

// HashAPIKey is the stored form of an API key.
func HashAPIKey(key string) string {
	s := sha256.Sum256([]byte(key))
	return hex.EncodeToString(s[:])
}

// randomDigits returns n random decimal digits, the first non-zero.
func randomDigits(n int) (string, error) {
	b := make([]byte, n)
	for i := range b {
		lo := int64(0)
		if i == 0 {
			lo = 1
		}
		d, err := rand.Int(rand.Reader, big.NewInt(10-lo))
		if err != nil {
			return "", err
		}
		b[i] = byte('0' + lo + d.Int64())
	}
	return string(b), nil
}

// keyStore is where CreateAPIKey writes.
type keyStore interface {
	CreateAPIKey(ctx context.Context, k store.APIKey) error
}

// CreateAPIKey creates an admin API key named name in st and returns the
// key, which is shown only this once (`web apikey create`).
func CreateAPIKey(ctx context.Context, st keyStore, name string, now time.Time) (key, id string, err error) {
	key, id, hash, err := NewAPIKey()
	if err != nil {
		return "", "", err
	}
	if err := st.CreateAPIKey(ctx, store.APIKey{ID: id, Name: name, Hash: hash, CreatedAt: now.UTC().Truncate(time.Millisecond)}); err != nil {
		return "", "", err
	}
	return key, id, nil
}
