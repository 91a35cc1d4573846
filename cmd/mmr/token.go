package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/openmmr/mmr/control/token"
)

// tokenMain is `mmr token`: it mints a control-channel join token
// (docs/control-protocol.md, "Join tokens") for operators and tests and
// prints it on stdout. It returns the process exit code: 0 on success, 2 for
// bad flags, 1 when no token could be minted.
func tokenMain(args []string) int {
	fs := flag.NewFlagSet("mmr token", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mmr token [-secret-file FILE] -meeting ID -identity WHO [-role R] [-ttl D] [-e2ee]\n\n"+
			"Prints a join token for the control channel, signed with the server's join secret\n"+
			"(by default the one `mmr` created in its state directory). Flags:\n")
		fs.PrintDefaults()
	}
	secret := fs.String("secret", "", "the join-token secret itself (visible in ps; prefer -secret-file)")
	secretFile := fs.String("secret-file", "", "file holding the join-token secret: its text (hex as mmr writes it) is the key, one trailing newline ignored (default STATE/join.secret)")
	state := fs.String("state", defaultState(), "the mmr state directory whose join.secret signs by default")
	meeting := fs.String("meeting", "", "meeting ID the token admits to (required)")
	identity := fs.String("identity", "", "participant identity, e.g. a user ID or e-mail (required)")
	role := fs.String("role", "participant", "host, participant or viewer (webinar attendee: receives only)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token stays valid")
	e2ee := fs.Bool("e2ee", false, "the meeting is end-to-end encrypted (a version 3 token; every token of the meeting must agree, the first join fixes the mode)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "mmr token: "+format+"\n", a...)
		return code
	}
	if fs.NArg() > 0 {
		return fail(2, "unexpected argument %q (see -h)", fs.Arg(0))
	}
	key := []byte(*secret)
	switch {
	case *secret != "" && *secretFile != "":
		return fail(2, "give -secret or -secret-file, not both")
	case *secretFile != "":
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return fail(2, "-secret-file: %v", err)
		}
		key = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	case *secret == "":
		// Default: the secret `mmr` created in its state directory.
		path := filepath.Join(*state, "join.secret")
		b, err := os.ReadFile(path)
		if err != nil {
			return fail(2, "no -secret-file given and %v (start mmr once to create it, or pass -secret-file)", err)
		}
		key = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	}
	if *meeting == "" || *identity == "" {
		return fail(2, "-meeting and -identity are required")
	}
	r, err := token.ParseRole(*role)
	if err != nil {
		return fail(2, "-role: %v", err)
	}
	if *ttl <= 0 {
		return fail(2, "-ttl must be positive")
	}
	tok, err := token.Mint(key, token.Claims{Meeting: *meeting, Identity: *identity, Role: r, Expiry: time.Now().Add(*ttl), E2EE: *e2ee})
	if err != nil {
		return fail(1, "%v", err)
	}
	fmt.Println(tok)
	return 0
}
