package taskdtest_test

// TLS served by taskd itself (--tls-cert, --tls-key), against a real
// process with a self-signed certificate made here: HTTPS answers, plain
// HTTP on the same port does not get the API, and the flags' mistakes stop
// the start with an error that names them.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/taskdtest"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key as
// PEM files in dir and returns their paths and a pool that trusts it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "taskd test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)

	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}

func TestTLSServe(t *testing.T) {
	t.Parallel()
	certFile, keyFile, roots := selfSigned(t, t.TempDir())
	tlsClient := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	dbURL := pgtest.NewDB(t)
	p := taskdtest.Start(t, taskdtest.Options{
		DatabaseURL:     dbURL,
		Args:            []string{"--tls-cert", certFile, "--tls-key", keyFile},
		Env:             []string{"TASKD_DB_MAX_CONNS=5", "TASKD_UI=false"},
		TLSClientConfig: tlsClient,
	})
	require.True(t, strings.HasPrefix(p.URL, "https://"), "URL %q", p.URL)

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsClient.Clone(), ForceAttemptHTTP2: true}}
	t.Cleanup(hc.CloseIdleConnections)
	resp, err := hc.Get(p.URL + "/v1/kinds")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.Contains(t, string(body), `"double"`)
	require.Equal(t, 2, resp.ProtoMajor, "ServeTLS negotiates HTTP/2 with a client that offers it")

	// The other roles take the same flags; Start's readiness check (GET
	// /readyz over HTTPS, trusting only the test's certificate) is the
	// assertion.
	for _, role := range []string{"api", "worker"} {
		t.Run(role+" serves HTTPS too", func(t *testing.T) {
			q := taskdtest.Start(t, taskdtest.Options{
				DatabaseURL:     dbURL,
				Role:            role,
				Args:            []string{"--tls-cert", certFile, "--tls-key", keyFile},
				Env:             []string{"TASKD_DB_MAX_CONNS=5", "TASKD_UI=false"},
				TLSClientConfig: tlsClient,
			})
			require.True(t, strings.HasPrefix(q.URL, "https://"), "URL %q", q.URL)
		})
	}

	t.Run("a client that does not trust the certificate is refused", func(t *testing.T) {
		untrusting := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
		defer untrusting.CloseIdleConnections()
		_, err := untrusting.Get(p.URL + "/readyz")
		var uerr x509.UnknownAuthorityError
		require.ErrorAs(t, err, &uerr)
	})

	t.Run("plain HTTP on the TLS port does not reach the API", func(t *testing.T) {
		plain := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
		defer plain.CloseIdleConnections()
		resp, err := plain.Get("http://" + p.Addr + "/v1/kinds")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// net/http answers a plain request on a TLS connection itself.
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		require.NotContains(t, string(body), `"double"`)
	})
}

// TestTLSFlagErrors runs the binary with the flags' mistakes. The database
// URL points nowhere: the TLS files are read before the database is
// opened, so the error must be about them.
func TestTLSFlagErrors(t *testing.T) {
	t.Parallel()
	binary := taskdtest.Build(t)
	dir := t.TempDir()
	certFile, keyFile, _ := selfSigned(t, dir)
	otherDir := filepath.Join(dir, "other")
	require.NoError(t, os.Mkdir(otherDir, 0o700))
	_, otherKey, _ := selfSigned(t, otherDir)
	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600))

	tests := []struct {
		name     string
		args     []string
		env      []string
		wantCode int
		want     []string
	}{
		{"cert without key", []string{"--tls-cert", certFile}, nil, 2,
			[]string{"--tls-cert (TASKD_TLS_CERT) and --tls-key (TASKD_TLS_KEY) go together"}},
		{"key without cert, from the environment", nil, []string{"TASKD_TLS_KEY=" + keyFile}, 2,
			[]string{"--tls-cert (TASKD_TLS_CERT) and --tls-key (TASKD_TLS_KEY) go together"}},
		{"missing file", []string{"--tls-cert", filepath.Join(dir, "absent.pem"), "--tls-key", keyFile}, nil, 1,
			[]string{"loading the TLS certificate", "(--tls-cert, --tls-key)", "absent.pem", "no such file"}},
		{"not PEM", []string{"--tls-cert", notPEM, "--tls-key", keyFile}, nil, 1,
			[]string{"(--tls-cert, --tls-key)", "failed to find any PEM data"}},
		{"key of another certificate", []string{"--tls-cert", certFile, "--tls-key", otherKey}, nil, 1,
			[]string{"(--tls-cert, --tls-key)", "private key does not match public key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(binary, append([]string{"serve", "--addr", "127.0.0.1:0"}, tt.args...)...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=postgres://nobody@127.0.0.1:1/none?connect_timeout=1"}, tt.env...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "taskd must fail: %v\n%s", err, out)
			require.Equal(t, tt.wantCode, exit.ExitCode(), "%s", out)
			for _, w := range tt.want {
				require.Contains(t, string(out), w)
			}
			require.NotContains(t, string(out), "listening")
		})
	}
}
