package main

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"riverqueue.com/riverui"
	"riverqueue.com/riverui/uiendpoints"

	"github.com/taskd/taskd/internal/auth"
	taskhttp "github.com/taskd/taskd/internal/http"
	"github.com/taskd/taskd/internal/jobs"
	"github.com/taskd/taskd/internal/store"
	"github.com/taskd/taskd/internal/tasks"
	"github.com/taskd/taskd/migrations"
)

// runServe runs "serve", "api" or "worker" (r) until ctx is cancelled, then
// shuts down in reverse order of start: HTTP, workers, pool.
func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, r role) error {
	cfg, err := parseServeConfig(r, args, getenv, stderr)
	if err != nil {
		return err
	}
	logger, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	// The files are read before anything else starts, so that a wrong path
	// or a key that does not match fails the start, not the first request.
	tlsConfig, err := loadTLS(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return err
	}

	if cfg.QueueWarning != nil {
		logger.Warn("kinds of the configuration file on queues this process does not work; other processes must work them",
			slog.String("detail", cfg.QueueWarning.Error()))
	}

	pool, err := openPool(ctx, cfg.DatabaseURL, cfg.DBMaxConns)
	if err != nil {
		return err
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()

	provider, err := checkSchema(ctx, db, cfg.Migrate, logger)
	if err != nil {
		return err
	}

	st := store.New(pool)
	// Read once before listening: whether auth is on decides whether this
	// process may listen off loopback at all.
	tokens, err := auth.NewCache(auth.CacheConfig{Store: st, Logger: logger})
	if err != nil {
		return err
	}
	if err := tokens.Refresh(ctx); err != nil {
		return fmt.Errorf("reading API tokens: %w", err)
	}
	jcfg := cfg.jobsConfig(st)
	jcfg.Logger = logger
	// The heartbeat has connections of its own (jobs.Config.HeartbeatStore).
	beatPool, err := openPool(ctx, cfg.DatabaseURL, jobs.HeartbeatsInFlight)
	if err != nil {
		return err
	}
	defer beatPool.Close()
	jcfg.HeartbeatStore = store.New(beatPool)
	jcfg.UserAgent = userAgent()
	// The batch callbacks hear from the River client of the tasks it
	// finished, and the service they run in needs the client: svc is set
	// before client.Start, which comes before the first call.
	var svc *tasks.Service
	jcfg.FinishedFunc = func(f jobs.Finished) { svc.TasksFinished(f) }
	// Workers run the service too: whichever process finishes a batch's
	// last task inserts its callback, and whichever River elects leader
	// enqueues the schedules.
	tcfg := tasks.Config{Store: st, Logger: logger, Schedules: cfg.Schedules, Queues: cfg.ClusterQueues}
	pm, err := newProcessMetrics(st, jcfg.Queues, cfg.ClusterQueues, logger)
	if err != nil {
		return err
	}
	pm.wire(&jcfg, &tcfg)
	client, err := jobs.NewClient(jcfg)
	if err != nil {
		return usagef("%v", err)
	}
	// Every role runs the service: whichever process finishes a batch's
	// last task (a worker, or the api process that an external worker
	// completes it through) inserts its callback, and whichever River
	// elects leader enqueues the schedules. Submissions are checked
	// against the cluster's queues, not this process's.
	tcfg.Jobs = client
	if svc, err = tasks.New(tcfg); err != nil {
		return err
	}
	defer svc.Close()
	pm.client, pm.svc = client, svc

	if cfg.PprofAddr != "" {
		stopPprof, err := servePprof(cfg.PprofAddr, logger)
		if err != nil {
			return err
		}
		defer stopPprof()
	}

	var (
		srv    *http.Server
		srvErr = make(chan error, 1)
	)
	readyFunc := func(ctx context.Context) error { return ready(ctx, st, provider) }
	if r == roleWorker {
		handler, err := taskhttp.NewHealthServer(taskhttp.HealthConfig{
			Ready:   readyFunc,
			Leader:  client.IsLeader,
			Metrics: pm.Handler(),
			Auth:    tokens,
		})
		if err != nil {
			return err
		}
		srv = &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: 10 * time.Second,
			// No request body to read; a scrape is answered in well under
			// these.
			ReadTimeout:  10 * time.Second,
			WriteTimeout: 30 * time.Second,
			IdleTimeout:  2 * time.Minute,
			ErrorLog:     slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
	} else {
		hcfg := taskhttp.Config{
			Store:                st,
			Jobs:                 client,
			Tasks:                svc,
			Logger:               logger,
			MaxBodyBytes:         cfg.MaxBodyBytes,
			MaxBatchBodyBytes:    cfg.MaxBatchBodyBytes,
			MaxBodyBytesInFlight: cfg.MaxBodyInFlight,
			DatabaseTimeout:      cfg.DBTimeout,
			TrustedOrigins:       cfg.TrustedOrigins,
			Metrics:              pm.Handler(),
			ObserveFunc:          pm.ObserveHTTP,
			Ready:                readyFunc,
			Leader:               client.IsLeader,
			Auth:                 tokens,
		}
		if cfg.UI {
			endpoints := func() uiendpoints.Bundle { return riverui.NewEndpoints(client.River(), nil) }
			// Made once here, so that a configuration River UI refuses
			// fails the start rather than the first request.
			if _, err := riverui.NewHandler(&riverui.HandlerOpts{Endpoints: endpoints(), Logger: logger, Prefix: "/riverui"}); err != nil {
				return fmt.Errorf("configuring River UI: %w", err)
			}
			hcfg.Extra, hcfg.ExtraPrefix = newLazyUI(ctx, endpoints, "/riverui", logger), "/riverui"
		}
		handler, err := taskhttp.NewServer(hcfg)
		if err != nil {
			return usagef("%v", err)
		}
		srv = &http.Server{
			Handler: handler,
			// No ReadTimeout or WriteTimeout: the handler sets deadlines per
			// request, so that a slow upload is answered 408 rather than cut
			// off, and a large batch over a slow link still gets in.
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
	}
	// Listen before starting workers so that a busy port fails fast.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s (--addr, TASKD_ADDR): %w", cfg.Addr, err)
	}
	defer ln.Close()
	if err := checkExposure(ln.Addr(), tokens.Enabled(), cfg.Insecure, logger); err != nil {
		return err
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); !cfg.Insecure && !(ok && tcp.IP.IsLoopback()) {
		// Off loopback, revoking the last token must not open the API.
		tokens.KeepOn()
	}
	// Tokens created or revoked take effect within RefreshInterval; the
	// refresh stops before the pool closes (defers run in reverse).
	tokensCtx, stopTokens := context.WithCancel(context.WithoutCancel(ctx))
	tokensDone := make(chan struct{})
	go func() {
		defer close(tokensDone)
		tokens.Run(tokensCtx)
	}()
	defer func() {
		stopTokens()
		<-tokensDone
	}()
	scheme := "http"
	if tlsConfig != nil {
		srv.TLSConfig, scheme = tlsConfig, "https"
	}

	if err := client.Start(ctx); err != nil {
		return err
	}
	if r == roleAPI {
		logger.Info("insert-only River client started: this process works no queue and never leads",
			slog.String("client_id", client.ID()), slog.String("cluster_queues", strings.Join(cfg.ClusterQueues, ",")))
	} else {
		logger.Info("workers started", slog.String("client_id", client.ID()), slog.String("queues", queueList(cfg.Queues)),
			slog.Duration("fetch_cooldown", cfg.FetchCooldown), slog.Duration("fetch_poll_interval", cfg.FetchPollInterval))
	}
	callbacksCtx, stopCallbacks := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCallbacks()
	callbacksDone := make(chan struct{})
	go func() {
		defer close(callbacksDone)
		svc.RunBatchCallbacks(callbacksCtx)
	}()
	// The metrics' refresh stops before the pool closes (defers run in
	// reverse).
	metricsCtx, stopMetrics := context.WithCancel(context.WithoutCancel(ctx))
	metricsDone := make(chan struct{})
	go func() {
		defer close(metricsDone)
		pm.Run(metricsCtx)
	}()
	defer func() {
		stopMetrics()
		<-metricsDone
	}()
	// An api process never leads, so its schedules would never tick:
	// they are not started at all, and the worker that leads enqueues
	// them.
	if r != roleAPI {
		svc.StartSchedules()
		if len(cfg.Schedules) > 0 {
			logger.Info("schedules loaded; the River leader enqueues them", slog.Int("schedules", len(cfg.Schedules)))
		}
	}

	go func() {
		if tlsConfig != nil {
			// The certificate is in srv.TLSConfig; ServeTLS also sets up
			// HTTP/2, which a tls.NewListener would not.
			srvErr <- srv.ServeTLS(ln, "", "")
			return
		}
		srvErr <- srv.Serve(ln)
	}()
	logger.Info("listening", slog.String("addr", ln.Addr().String()), slog.String("role", string(r)), slog.String("scheme", scheme))
	fmt.Fprintf(stdout, "taskd listening on %s://%s\n", scheme, ln.Addr())

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", slog.Duration("grace", cfg.ShutdownGrace))
	case err := <-srvErr:
		runErr = fmt.Errorf("HTTP server: %w", err)
	}

	// Schedules stop before the River client they insert with; waiting
	// claims return (empty) at once instead of holding the shutdown up for
	// their whole wait.
	svc.Close()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("HTTP shutdown", slog.String("error", err.Error()))
	}
	cancel()
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownGrace)
	defer cancel()
	if err := client.Stop(gctx, 10*time.Second); err != nil {
		runErr = errors.Join(runErr, err)
	}
	// After the workers: the callbacks of batches they finished last are
	// decided before the process exits.
	stopCallbacks()
	<-callbacksDone
	if runErr == nil {
		logger.Info("stopped")
	}
	return runErr
}

// checkExposure refuses to serve without auth (no token in the database)
// on an address other machines can reach, unless insecure, which is
// logged as a warning at every start.
func checkExposure(addr net.Addr, authOn, insecure bool, logger *slog.Logger) error {
	if authOn {
		return nil
	}
	tcp, ok := addr.(*net.TCPAddr)
	if ok && tcp.IP.IsLoopback() {
		logger.Info("no API token exists: serving without auth, on loopback only")
		return nil
	}
	if insecure {
		logger.Warn("no API token exists and --insecure (TASKD_INSECURE) is set: anyone who can reach this address may do everything",
			slog.String("addr", addr.String()))
		return nil
	}
	return usagef("refusing to listen on %s without auth: no API token exists. Create one with "+
		"`taskd token create --name admin --scope admin` (it takes effect on every taskd within 5 seconds), "+
		"listen on a loopback address (--addr 127.0.0.1:8080), or pass --insecure (TASKD_INSECURE=true) to serve everyone without auth", addr)
}

func openPool(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, usagef("invalid --database-url (DATABASE_URL) %q: %v", redactURL(url), err)
	}
	pcfg.MaxConns = maxConns
	// Operators (and the fault tests) find taskd's connections in
	// pg_stat_activity by it; a URL that sets its own wins.
	if _, ok := pcfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "taskd"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to database: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to database %s: %w", redactURL(url), err)
	}
	return pool, nil
}

// checkSchema refuses to go on with pending migrations unless migrate is
// set, in which case it applies them.
// The provider is returned for /readyz.
func checkSchema(ctx context.Context, db *sql.DB, migrate bool, logger *slog.Logger) (*goose.Provider, error) {
	provider, err := migrations.NewProvider(db)
	if err != nil {
		return nil, err
	}
	pending, err := provider.HasPending(ctx)
	if err != nil {
		return nil, fmt.Errorf("checking migrations: %w", err)
	}
	if !pending {
		return provider, nil
	}
	if !migrate {
		return nil, errors.New("the database schema is not current: run `taskd migrate up` first, or start with --migrate (TASKD_MIGRATE=true)")
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("applying migrations: %w", err)
	}
	for _, r := range results {
		logger.Info("applied migration", slog.Int64("version", r.Source.Version), slog.String("file", r.Source.Path), slog.Duration("took", r.Duration))
	}
	return provider, nil
}

// ready is what /readyz checks: the database answers and the schema is
// current.
func ready(ctx context.Context, st *store.Store, provider *goose.Provider) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := st.Ping(ctx); err != nil {
		return fmt.Errorf("database unreachable: %w", err)
	}
	pending, err := provider.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("checking migrations: %w", err)
	}
	if pending {
		return errors.New("migrations pending")
	}
	return nil
}

func servePprof(addr string, logger *slog.Logger) (func(), error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s (--pprof-addr, TASKD_PPROF_ADDR): %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	logger.Info("pprof listening", slog.String("addr", ln.Addr().String()))
	return func() { _ = srv.Close() }, nil
}

// userAgent is the User-Agent of pushed attempts: taskd and its module
// version when the binary knows it.
func userAgent() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return "taskd/" + bi.Main.Version
	}
	return "taskd/dev"
}

// loadTLS reads the certificate and key files of --tls-cert and --tls-key;
// both empty means plain HTTP (a nil config). The minimum version is TLS
// 1.2, Go's default for servers, written out so that it does not move
// with the toolchain.
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the TLS certificate %s and key %s (--tls-cert, --tls-key): %w", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
