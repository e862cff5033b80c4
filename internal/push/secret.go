package push

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Lengths of a decoded Standard Webhooks secret, as the specification sets
// them.
const (
	SecretMinBytes = 24
	SecretMaxBytes = 64
)

// secretPrefix starts every Standard Webhooks secret.
const secretPrefix = "whsec_"

// ParseSecret parses a Standard Webhooks secret: "whsec_" followed by the
// standard base64 encoding of 24 to 64 random bytes. It returns the decoded
// bytes. Its errors say what is wrong without repeating the secret, since
// they end up in logs and in the output of a configuration check.
func ParseSecret(s string) ([]byte, error) {
	encoded, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return nil, fmt.Errorf("push: secret must start with %q", secretPrefix)
	}
	secret, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		// A base64.CorruptInputError names an offset, never the input, so
		// it is safe to keep.
		var corrupt base64.CorruptInputError
		if errors.As(err, &corrupt) {
			return nil, fmt.Errorf("push: secret after %q is not standard base64 (bad character or padding at byte %d)", secretPrefix, int64(corrupt)+int64(len(secretPrefix)))
		}
		return nil, fmt.Errorf("push: secret after %q is not standard base64", secretPrefix)
	}
	if n := len(secret); n < SecretMinBytes || n > SecretMaxBytes {
		return nil, fmt.Errorf("push: secret decodes to %d bytes, must be %d to %d", n, SecretMinBytes, SecretMaxBytes)
	}
	return secret, nil
}

// Sign returns the value of the webhook-signature header for one message:
// "v1," and the standard base64 of HMAC-SHA256(secret, id "." timestamp
// "." body), which every Standard Webhooks library verifies.
func Sign(secret []byte, id string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, timestamp, 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
