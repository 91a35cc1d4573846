package zone

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/openmmr/mmr/zone/proto"
)

// NewSecret returns a new random zone secret: 32 random bytes as 64
// lowercase hex characters (the hex text itself is the secret, so it can be
// pasted into a file, a flag or an environment variable unchanged).
func NewSecret() ([]byte, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	return []byte(hex.EncodeToString(b[:])), nil
}

// ReadSecretFile reads a zone secret: the file's content with surrounding
// white space removed, at least proto.MinSecretLen bytes.
func ReadSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("zone: secret: %w", err)
	}
	b = bytes.TrimSpace(b)
	if err := proto.CheckSecret(b); err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return b, nil
}

// LoadOrCreateSecret reads the secret file at path, or creates it (mode
// 0600, directory 0700) with NewSecret when it does not exist. created
// reports a new file, so the caller can tell the operator to copy it to the
// zone's other ZCs and MMRs.
func LoadOrCreateSecret(path string) (secret []byte, created bool, err error) {
	secret, err = ReadSecretFile(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return secret, false, err
	}
	if secret, err = NewSecret(); err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("zone: secret: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("zone: secret: %w", err)
	}
	_, err = f.Write(append(secret, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, fmt.Errorf("zone: secret: %w", err)
	}
	return secret, true, nil
}
