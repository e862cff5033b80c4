package push

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The test vector published with the Standard Webhooks specification and
// checked by its reference libraries: a receiver's library accepts what
// Sign produces only if this matches.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSign(t *testing.T) {
	t.Parallel()

	secret, err := ParseSecret(vectorSecret)
	require.NoError(t, err)
	require.Equal(t, vectorSignature, Sign(secret, vectorID, vectorTimestamp, []byte(vectorBody)))

	// Every part is signed.
	require.NotEqual(t, vectorSignature, Sign(secret, vectorID+"x", vectorTimestamp, []byte(vectorBody)))
	require.NotEqual(t, vectorSignature, Sign(secret, vectorID, vectorTimestamp+1, []byte(vectorBody)))
	require.NotEqual(t, vectorSignature, Sign(secret, vectorID, vectorTimestamp, []byte(vectorBody+" ")))
	other := bytes.Clone(secret)
	other[0] ^= 1
	require.NotEqual(t, vectorSignature, Sign(other, vectorID, vectorTimestamp, []byte(vectorBody)))
}

func TestParseSecret(t *testing.T) {
	t.Parallel()

	encode := func(n int) string {
		return "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, n))
	}

	t.Run("Valid", func(t *testing.T) {
		t.Parallel()
		for _, n := range []int{SecretMinBytes, 32, SecretMaxBytes} {
			secret, err := ParseSecret(encode(n))
			require.NoError(t, err)
			require.Equal(t, bytes.Repeat([]byte{0xfb}, n), secret)
		}
		secret, err := ParseSecret(vectorSecret)
		require.NoError(t, err)
		require.Len(t, secret, 24)
	})

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			name, secret, wantErr string
		}{
			{"Empty", "", `must start with "whsec_"`},
			{"NoPrefix", strings.TrimPrefix(encode(32), "whsec_"), `must start with "whsec_"`},
			{"OtherPrefix", "whsec-" + strings.TrimPrefix(encode(32), "whsec_"), `must start with "whsec_"`},
			{"TooShort", encode(SecretMinBytes - 1), "decodes to 23 bytes, must be 24 to 64"},
			{"TooLong", encode(SecretMaxBytes + 1), "decodes to 65 bytes, must be 24 to 64"},
			{"OnlyPrefix", "whsec_", "decodes to 0 bytes"},
			// URL-safe base64 ('-' and '_') is not the standard alphabet.
			{"URLSafe", "whsec_" + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)), "not standard base64 (bad character or padding at byte 6)"},
			{"Unpadded", "whsec_" + base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)), "not standard base64"},
			{"Space", "whsec_ " + strings.TrimPrefix(encode(32), "whsec_"), "not standard base64"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				secret, err := ParseSecret(tt.secret)
				require.ErrorContains(t, err, tt.wantErr)
				require.Nil(t, secret)
				if len(tt.secret) > 8 {
					require.NotContains(t, err.Error(), tt.secret[len(tt.secret)-8:], "the error repeats the secret")
				}
			})
		}
	})
}
