package http

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// queryPair is one decoded key=value pair of a query string.
type queryPair struct {
	key, value string
}

// queryError is a malformed query string, naming the parameter.
type queryError struct {
	key, message string
}

// parseQuery splits a raw query string into its decoded pairs, in order.
// Unlike url.ParseQuery, which drops what it cannot read (so
// "limit=1;state=completed" silently lost its filter), every pair must be
// key=value with valid percent-encoding and '&' as the only separator.
// Lenient parsing (for the River UI, whose client we do not control) only
// refuses what would be misread: bad percent-encoding and ';'.
func parseQuery(raw string, strict bool) ([]queryPair, *queryError) {
	var pairs []queryPair
	for part := range strings.SplitSeq(raw, "&") {
		rawKey, rawValue, hasValue := strings.Cut(part, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil || !validText(key) {
			return nil, &queryError{key: "query", message: "malformed parameter name " + quoteClip(rawKey) + ": percent-encoding must be valid UTF-8"}
		}
		switch {
		case !strict && part == "":
			continue
		case !strict && !hasValue && !strings.Contains(part, ";"):
		case part == "":
			return nil, &queryError{key: "query", message: "empty parameter (two '&' in a row, or a trailing '&')"}
		case key == "":
			return nil, &queryError{key: "query", message: "parameter without a name: " + quoteClip(part)}
		case strings.Contains(part, ";"):
			return nil, &queryError{key: key, message: "';' is not a separator of query parameters; use '&'"}
		case !hasValue:
			return nil, &queryError{key: key, message: "must be given as name=value"}
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, &queryError{key: key, message: "is not validly percent-encoded"}
		}
		pairs = append(pairs, queryPair{key: key, value: value})
	}
	return pairs, nil
}

// query reads the query string of an API request strictly: only the known
// parameters, each at most once and not empty. It answers 422 naming the
// parameter itself when ok is false. (validURL has already refused
// malformed pairs and invalid UTF-8.)
func query(w http.ResponseWriter, r *http.Request, known ...string) (params map[string]string, ok bool) {
	params = map[string]string{}
	if r.URL.RawQuery == "" {
		return params, true
	}
	pairs, qerr := parseQuery(r.URL.RawQuery, true)
	if qerr != nil {
		fieldProblem(w, http.StatusUnprocessableEntity, qerr.key, qerr.message)
		return nil, false
	}
	var errs []FieldError
	for _, p := range pairs {
		_, seen := params[p.key]
		switch {
		case !slices.Contains(known, p.key):
			msg := "unknown query parameter"
			if len(known) > 0 {
				msg += "; known: " + strings.Join(known, ", ")
			} else {
				msg += "; this endpoint takes none"
			}
			errs = append(errs, FieldError{Field: p.key, Message: msg})
		case seen:
			errs = append(errs, FieldError{Field: p.key, Message: "must be given at most once"})
		case p.value == "":
			errs = append(errs, FieldError{Field: p.key, Message: "must not be empty"})
		}
		params[p.key] = p.value
	}
	if errs != nil {
		slices.SortStableFunc(errs, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
		errs = slices.CompactFunc(errs, func(a, b FieldError) bool { return a == b })
		writeProblem(w, Problem{Type: typeValidation, Status: http.StatusUnprocessableEntity, Detail: "invalid query parameters", Errors: errs})
		return nil, false
	}
	return params, true
}
