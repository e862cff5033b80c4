package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
)

// TokenPrefix starts every token, so that one found in a file or a log is
// recognisable as taskd's (and secret scanners can match it).
const TokenPrefix = "tkd_"

// tokenBytes is the randomness of a token: 256 bits, so that a plain
// SHA-256 is a sufficient hash (nothing to brute-force) and guessing is
// hopeless whatever the rate of attempts.
const tokenBytes = 32

// NewToken returns a new random token, its prefix followed by 32 random
// bytes in unpadded base64url.
func NewToken() (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// HashToken is what the database keeps of a token: its SHA-256.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// ParseScopes parses a comma-separated list of scopes ("read,work").
func ParseScopes(s string) ([]Scope, error) {
	var out []Scope
	for _, part := range strings.Split(s, ",") {
		sc := Scope(strings.TrimSpace(part))
		switch sc {
		case ScopeRead, ScopeSubmit, ScopeWork, ScopeAdmin:
			if !containsScope(out, sc) {
				out = append(out, sc)
			}
		case "":
		default:
			return nil, fmt.Errorf("unknown scope %q: want read, submit, work or admin", sc)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scope given: want read, submit, work or admin")
	}
	return out, nil
}

func containsScope(ss []Scope, s Scope) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// tokenNameRE is what a token's name may be: it shows in logs and tables.
var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidTokenName reports whether name may name a token: 1 to 128 letters,
// digits, '.', '_' or '-', starting with a letter or digit.
func ValidTokenName(name string) bool { return tokenNameRE.MatchString(name) }
