package auth

import (
	"strings"
	"testing"
	"time"
)

func TestNewToken(t *testing.T) {
	t.Parallel()
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken()
	if a == b || !strings.HasPrefix(a, TokenPrefix) || len(a) != len(TokenPrefix)+43 {
		t.Fatalf("tokens %q, %q: want distinct tkd_ + 43 base64url characters", a, b)
	}
	if len(HashToken(a)) != 32 || string(HashToken(a)) == string(HashToken(b)) {
		t.Fatal("hashes are not distinct SHA-256 sums")
	}
}

func TestParseScopes(t *testing.T) {
	t.Parallel()
	got, err := ParseScopes("read, work,read")
	if err != nil || len(got) != 2 || got[0] != ScopeRead || got[1] != ScopeWork {
		t.Fatalf("ParseScopes = %v, %v", got, err)
	}
	for _, bad := range []string{"", ",", "root", "read,Admin"} {
		if _, err := ParseScopes(bad); err == nil {
			t.Errorf("ParseScopes(%q) accepted", bad)
		}
	}
}

func TestValidTokenName(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{"ci": true, "team-a.worker_1": true, "": false, "-x": false, "a b": false, strings.Repeat("a", 129): false} {
		if ValidTokenName(name) != want {
			t.Errorf("ValidTokenName(%q) != %v", name, want)
		}
	}
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	l := NewLimiter(2, time.Minute, func() time.Time { return now })
	for i := range 2 {
		if limited, _ := l.Fail("a"); limited {
			t.Fatalf("failure %d limited", i+1)
		}
	}
	limited, after := l.Fail("a")
	if !limited || after != time.Minute {
		t.Fatalf("third failure: %v %s, want limited for a minute", limited, after)
	}
	if limited, _ := l.Fail("b"); limited {
		t.Fatal("another address limited")
	}
	now = now.Add(time.Minute)
	if limited, _ := l.Fail("a"); limited {
		t.Fatal("still limited in the next window")
	}
}
