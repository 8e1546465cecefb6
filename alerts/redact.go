package alerts

import (
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
)

// redactURL returns raw with everything that may be a secret masked: user info, the path
// (Slack and most webhook URLs carry their token in it) and the query. Scheme and host stay,
// so an error still says where delivery failed.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "<redacted>"
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host}
	if u.User != nil {
		r.User = url.User("xxxxx")
	}
	if u.Path != "" && u.Path != "/" {
		r.Path = "/xxxxx"
	}
	if u.RawQuery != "" {
		r.RawQuery = "xxxxx"
	}
	return r.String()
}

// redactedError is an error whose text had its secrets masked. It keeps the original chain
// so that errors.Is and errors.As (rate limits, status codes) still work.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// minScrubLen is the shortest secret fragment scrubbed from error text: shorter ones (a path
// of "/a") would mangle unrelated words and are not secrets anyway.
const minScrubLen = 8

// redactError masks secrets in err, the one place every receiver sends its errors through.
// The URL of a *url.Error in the chain is replaced in place (the chain stays reachable
// through Unwrap), then any remaining occurrence of a secret, of a secret URL's path or
// query, or of its basic-auth credentials is masked in the text (a server may echo the
// request in its error body). Call it on the error as the client returned it, before
// wrapping: fmt.Errorf computes its text once, so wrapping first would keep the URL there.
func redactError(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = redactURL(ue.URL)
	}
	msg := err.Error()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		u, perr := url.Parse(s)
		if perr != nil || u.Host == "" {
			// Not a URL: a token.
			msg = strings.ReplaceAll(msg, s, "<secret>")
			continue
		}
		msg = strings.ReplaceAll(msg, s, redactURL(s))
		for _, part := range []string{u.EscapedPath(), u.Path, u.RawQuery} {
			if len(part) >= minScrubLen {
				msg = strings.ReplaceAll(msg, part, "xxxxx")
			}
		}
		if p, ok := u.User.Password(); ok && p != "" {
			basic := base64.StdEncoding.EncodeToString([]byte(u.User.Username() + ":" + p))
			msg = strings.ReplaceAll(msg, basic, "xxxxx")
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return &redactedError{msg: msg, err: err}
}
