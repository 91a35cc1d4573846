// Package onebox is what the one-box node (`mmr` with its in-process zone
// and web tier) and a client on the same machine share: where the node keeps
// its state, and the file telling a local client how to join the node's
// meeting (`openmmr join -local`).
package onebox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// DefaultState is the state directory of `mmr` when -state is not given:
// $STATE_DIRECTORY (systemd's StateDirectory=), else openmmr under the
// user's configuration directory, else .openmmr.
func DefaultState() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return d
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "openmmr")
	}
	return ".openmmr"
}

// JoinFile, in the state directory, tells a client on the same machine how
// to join the one-box meeting of the node running now. The node rewrites it
// at every start (the TLS port may differ); mode 0600, since it holds the
// passcode.
const JoinFile = "local-join.json"

// Join is the content of JoinFile.
type Join struct {
	Web      string `json:"web"`      // the web tier's URL, https://127.0.0.1:PORT
	Pin      string `json:"pin"`      // SHA-256 fingerprint of the node's certificate (tlsutil.Fingerprint)
	Meeting  string `json:"meeting"`  // the one-box meeting's ID
	Passcode string `json:"passcode"` // and its passcode
}

// Write stores j in dir's JoinFile.
func Write(dir string, j Join) error {
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, JoinFile), b, 0o600)
}

// Read loads dir's JoinFile; its error says to start the node when there is
// none.
func Read(dir string) (Join, error) {
	path := filepath.Join(dir, JoinFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Join{}, fmt.Errorf("no one-box node has run with state directory %s (start one with `go run ./cmd/mmr`, or name its -state)", dir)
	}
	if err != nil {
		return Join{}, err
	}
	var j Join
	if err := json.Unmarshal(b, &j); err != nil {
		return Join{}, fmt.Errorf("%s: %w", path, err)
	}
	if j.Web == "" || j.Pin == "" || j.Meeting == "" {
		return Join{}, fmt.Errorf("%s: incomplete (restart the node to rewrite it)", path)
	}
	return j, nil
}
