package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/taskd/taskd/internal/auth"
	"github.com/taskd/taskd/internal/store"
)

const tokenUsage = `Usage: taskd token <create|list|revoke> [flags]

  create --name NAME --scope SCOPE[,SCOPE] [--queues Q1,Q2] [--expires 720h]
           create a token and print it, once: only its hash is stored
  list     list the tokens (never the tokens themselves)
  revoke NAME
           revoke a token; every taskd refuses it within 5 seconds

Scopes: read (GET tasks, batches, kinds, queues, schedules), submit (read,
plus submitting tasks and batches, cancel and retry), work (claims, complete,
fail, heartbeat), admin (everything: queue pause/resume, /metrics, River UI).
Once any token exists, every taskd of the database requires one.

These commands talk to the database directly, like taskd migrate.

Flags:
`

// tokenJSON is a token as "taskd token list --json" prints it.
type tokenJSON struct {
	Name       string     `json:"name"`
	Scopes     []string   `json:"scopes"`
	Queues     []string   `json:"queues"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

func runToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlagSet("taskd token", getenv, stderr)
	f.fs.Usage = func() {
		fmt.Fprint(stderr, tokenUsage)
		f.fs.PrintDefaults()
	}
	dbURL := f.string("database-url", "DATABASE_URL", "", "PostgreSQL connection string (required)")
	asJSON := f.bool("json", "TASKD_JSON", false, "list: print JSON instead of a table")
	name := f.fs.String("name", "", "create: the token's name, unique (letters, digits, '.', '_', '-')")
	scope := f.fs.String("scope", "", "create: its scopes, comma-separated: read, submit, work, admin")
	queues := f.fs.String("queues", "", "create: limit it to these queues, comma-separated (default every queue)")
	expires := f.fs.String("expires", "", "create: how long it is valid, such as 720h (default: until revoked)")
	// Flags and positional arguments in any order ("revoke ci --database-url=…").
	var pos []string
	for {
		if err := f.parse(args); err != nil {
			return err
		}
		args = f.fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	if len(pos) == 0 {
		f.fs.Usage()
		return usagef("token: no action given")
	}
	action := pos[0]
	switch {
	case action == "create" && len(pos) == 1, action == "list" && len(pos) == 1, action == "revoke" && len(pos) == 2:
	case action == "revoke":
		return usagef("token revoke: want one token name")
	case action == "create" || action == "list":
		return usagef("token %s: unexpected argument %q", action, pos[1])
	default:
		f.fs.Usage()
		return usagef("token: unknown action %q", action)
	}

	var tok store.Token
	if action == "create" {
		if !auth.ValidTokenName(*name) {
			return usagef("token create: --name %q: want 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", *name)
		}
		scopes, err := auth.ParseScopes(*scope)
		if err != nil {
			return usagef("token create: --scope: %v", err)
		}
		tok = store.Token{Name: *name}
		for _, s := range scopes {
			tok.Scopes = append(tok.Scopes, string(s))
		}
		if *queues != "" {
			for _, q := range strings.Split(*queues, ",") {
				if q = strings.TrimSpace(q); q != "" {
					tok.Queues = append(tok.Queues, q)
				}
			}
			if len(tok.Queues) == 0 {
				return usagef("token create: --queues %q names no queue", *queues)
			}
			// River UI and /metrics show every queue: a tenant cannot have
			// them.
			if slices.Contains(scopes, auth.ScopeAdmin) {
				return usagef("token create: an admin token sees every queue (River UI, /metrics, queue control); limit a token to --queues with the read, submit or work scopes only")
			}
		}
		if *expires != "" {
			d, err := time.ParseDuration(*expires)
			if err != nil || d <= 0 {
				return usagef("token create: invalid --expires %q: want a positive duration such as 720h", *expires)
			}
			at := time.Now().Add(d)
			tok.ExpiresAt = &at
		}
	}
	jsonOut, err := f.parseBool("json", *asJSON)
	if err != nil {
		return err
	}
	if *dbURL == "" {
		return usagef("%s is required", f.setting("database-url"))
	}
	pool, err := openPool(ctx, *dbURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	st := store.New(pool)

	switch action {
	case "create":
		token, err := auth.NewToken()
		if err != nil {
			return err
		}
		tok.Hash = auth.HashToken(token)
		if _, err := st.TokenInsert(ctx, tok); errors.Is(err, store.ErrTokenExists) {
			return fmt.Errorf("a token named %q exists (revoked tokens keep their names); choose another name", tok.Name)
		} else if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "created token %q (scopes %s); it is shown only now, store it safely:\n", tok.Name, strings.Join(tok.Scopes, ","))
		fmt.Fprintln(stdout, token)
		return nil
	case "revoke":
		if err := st.TokenRevoke(ctx, pos[1]); errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no token named %q, or it is revoked already", pos[1])
		} else if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked token %q; every taskd refuses it within 5 seconds\n", pos[1])
		return nil
	}
	tokens, err := st.TokenList(ctx)
	if err != nil {
		return err
	}
	if jsonOut {
		out := struct {
			Tokens []tokenJSON `json:"tokens"`
		}{Tokens: []tokenJSON{}}
		for _, t := range tokens {
			out.Tokens = append(out.Tokens, tokenJSON{Name: t.Name, Scopes: t.Scopes, Queues: t.Queues, CreatedAt: t.CreatedAt,
				LastUsedAt: t.LastUsedAt, ExpiresAt: t.ExpiresAt, RevokedAt: t.RevokedAt})
		}
		data, err := json.Marshal(out)
		if err != nil {
			return fmt.Errorf("encoding tokens: %w", err)
		}
		_, err = fmt.Fprintf(stdout, "%s\n", data)
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSCOPES\tQUEUES\tCREATED\tLAST USED\tEXPIRES\tREVOKED")
	for _, t := range tokens {
		q := "*"
		if t.Queues != nil {
			q = strings.Join(t.Queues, ",")
		}
		fmt.Fprintln(tw, strings.Join([]string{t.Name, strings.Join(t.Scopes, ","), q, fmtTime(&t.CreatedAt),
			fmtTime(t.LastUsedAt), fmtTime(t.ExpiresAt), fmtTime(t.RevokedAt)}, "\t"))
	}
	return tw.Flush()
}
