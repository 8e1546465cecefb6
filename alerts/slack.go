package alerts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/slack-go/slack"

	"github.com/emergent-sh/emergent/config"
)

// Slack posts one Block Kit message per episode transition, through an incoming webhook or
// as a bot (token + channel). An episode is posted firing once and resolved at most once,
// and only if its firing was posted; the record of what was posted survives restarts when
// the receiver has a state file. As a bot it replies to the firing message's thread when the
// episode resolves and edits that message to show it resolved.
type Slack struct {
	webhookURL string        // webhook mode
	client     *http.Client  // webhook mode
	api        *slack.Client // bot mode
	channel    string        // bot mode
	secrets    []string
	log        *episodeLog
	logger     *slog.Logger
}

// NewSlack returns the Slack notifier of receiver r. client carries r's HTTP settings
// (proxy, TLS); logger may be nil.
func NewSlack(r config.Receiver, client *http.Client, logger *slog.Logger) (*Slack, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if client == nil {
		client = http.DefaultClient
	}
	webhookURL, token := string(r.WebhookURL), string(r.Token)
	switch {
	case webhookURL != "" && token != "":
		return nil, errors.New("slack: set either a webhook URL or a token, not both")
	case webhookURL == "" && token == "":
		return nil, errors.New("slack: a webhook URL or a token + channel is required")
	case token != "" && r.Channel == "":
		return nil, errors.New("slack: token mode needs a channel")
	}
	log, err := openEpisodeLog(r.StateFile, nil)
	if err != nil {
		// The state file is optional by design: without it the worst case is one repeated
		// post for an episode already posted, which beats not paging at all.
		logger.Warn("Ignoring unreadable Slack state file; episodes posted before may be posted again", "file", r.StateFile, "err", err)
		log, _ = openEpisodeLog("", nil)
		log.path = r.StateFile
	}
	s := &Slack{client: client, secrets: []string{webhookURL, token}, log: log, logger: logger}
	if token != "" {
		opts := []slack.Option{slack.OptionHTTPClient(client)}
		if r.APIURL != "" {
			opts = append(opts, slack.OptionAPIURL(r.APIURL))
		}
		s.api, s.channel = slack.New(token, opts...), r.Channel
	} else {
		s.webhookURL = webhookURL
	}
	return s, nil
}

// Notify posts each alert's transition; which transitions are still due is the Manager's
// decision (due), made before every attempt. After a retryable failure it stops: the rest go
// out on the retry, without what was posted already.
func (s *Slack) Notify(ctx context.Context, alerts ...*Alert) (bool, error) {
	var errs []error
	for _, a := range alerts {
		retry, err := s.notify(ctx, a)
		if err != nil && retry {
			return true, err
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return false, errors.Join(errs...)
}

// due reports whether a's transition is still to post: a firing not posted yet or an update of
// one that was; the resolve of an episode posted firing, unless it was posted and (as a bot)
// shown on the firing message already. The resolve of an episode nobody was paged for (its
// firing post was dropped or failed, or it was posted before the state file existed) is not
// due: a lone "resolved" only confuses.
func (s *Slack) due(a *Alert) bool {
	rec, posted := s.log.get(a.EpisodeKey())
	if !a.Resolved() {
		return !posted || rec.Revision < a.Revision
	}
	return posted && (rec.ResolvedAt.IsZero() || (s.api != nil && rec.TS != "" && !rec.Edited))
}

func (s *Slack) notify(ctx context.Context, a *Alert) (bool, error) {
	key := a.EpisodeKey()
	rec, posted := s.log.get(key)
	if !a.Resolved() {
		if posted {
			return s.notifyUpdate(ctx, key, rec, a)
		}
		text, blocks := slackMessage(a)
		channel, ts, err := s.post(ctx, text, blocks, "")
		if err != nil {
			return s.failed(fmt.Sprintf("post firing %s", a.Labels["alertname"]), err)
		}
		s.record(key, episodeRecord{FiredAt: s.log.now(), Channel: channel, TS: ts, Revision: a.Revision})
		s.uploadChart(ctx, a, channel, ts)
		return false, nil
	}

	if rec.ResolvedAt.IsZero() {
		var err error
		if s.api != nil && rec.TS != "" {
			_, _, err = s.post(ctx, slackResolveReply(a), nil, rec.TS)
		} else {
			text, blocks := slackMessage(a)
			_, _, err = s.post(ctx, text, blocks, "")
		}
		if err != nil {
			return s.failed(fmt.Sprintf("post resolve %s", a.Labels["alertname"]), err)
		}
		rec.ResolvedAt = s.log.now()
		s.record(key, rec)
	}
	if s.api != nil && rec.TS != "" && !rec.Edited {
		text, blocks := slackMessage(a)
		_, _, _, err := s.api.UpdateMessageContext(ctx, rec.Channel, rec.TS,
			slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...))
		if err != nil {
			return s.failed(fmt.Sprintf("mark message %s resolved", rec.TS), err)
		}
		rec.Edited = true
		s.record(key, rec)
	}
	return false, nil
}

// chartUploadTimeout bounds drawing and uploading a page's chart: it is one range query and a
// small PNG, and the page itself is already posted.
const chartUploadTimeout = 30 * time.Second

// uploadChart puts the alert's chart into the page's thread (bot mode; a webhook cannot
// upload). It is best effort: the page is posted and recorded, so a failure is logged and
// never retried or allowed to re-post the page.
func (s *Slack) uploadChart(ctx context.Context, a *Alert, channel, ts string) {
	if s.api == nil || a.Chart == nil || ts == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, chartUploadTimeout)
	defer cancel()
	png, err := a.Chart(ctx)
	if err == nil {
		_, err = s.api.UploadFileContext(ctx, slack.UploadFileParameters{
			Reader: bytes.NewReader(png), FileSize: len(png), Filename: "emergentd-chart.png",
			Title: "inbound and work against what emergentd expected", AltTxt: a.Annotations["summary"],
			Channel: channel, ThreadTimestamp: ts,
		})
	}
	if err != nil {
		s.logger.Warn("Chart not posted to the page's thread", "alert", a.Labels["alertname"], "err", redactError(err, s.secrets...))
	}
}

// notifyUpdate tells that a firing episode got much worse: in bot mode a reply in its thread
// with the new numbers (broadcast to the channel: it is news) and the original message edited
// to them, so nothing is hidden behind an old page; with a webhook a new message.
func (s *Slack) notifyUpdate(ctx context.Context, key string, rec episodeRecord, a *Alert) (bool, error) {
	text, blocks := slackMessage(a)
	var err error
	if s.api != nil && rec.TS != "" {
		_, _, err = s.post(ctx, slackUpdateReply(a), nil, rec.TS)
		if err == nil {
			_, _, _, err = s.api.UpdateMessageContext(ctx, rec.Channel, rec.TS,
				slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...))
		}
	} else {
		_, _, err = s.post(ctx, text, blocks, "")
	}
	if err != nil {
		return s.failed(fmt.Sprintf("post update %d of %s", a.Revision, a.Labels["alertname"]), err)
	}
	rec.Revision = a.Revision
	s.record(key, rec)
	return false, nil
}

// post sends one message and returns the channel ID and timestamp that identify it (bot
// mode only: incoming webhooks return neither).
func (s *Slack) post(ctx context.Context, text string, blocks []slack.Block, threadTS string) (channel, ts string, err error) {
	if s.api == nil {
		msg := &slack.WebhookMessage{Text: text}
		if len(blocks) > 0 {
			msg.Blocks = &slack.Blocks{BlockSet: blocks}
		}
		return "", "", slack.PostWebhookCustomHTTPContext(ctx, s.webhookURL, s.client, msg)
	}
	opts := []slack.MsgOption{slack.MsgOptionText(text, false), slack.MsgOptionDisableLinkUnfurl()}
	if len(blocks) > 0 {
		opts = append(opts, slack.MsgOptionBlocks(blocks...))
	}
	if threadTS != "" {
		opts = append(opts, slack.MsgOptionTS(threadTS))
	}
	return s.api.PostMessageContext(ctx, s.channel, opts...)
}

func (s *Slack) record(key string, rec episodeRecord) {
	if err := s.log.put(key, rec); err != nil {
		s.logger.Warn("Cannot save Slack state file; a restart may post this episode again", "file", s.log.path, "err", err)
	}
}

// failed wraps a Slack error with what was being done, masks the webhook URL and token, and
// tells the retrier whether and when to try again.
func (s *Slack) failed(what string, err error) (bool, error) {
	retry, after := classifySlackError(err)
	if s.api != nil {
		what += fmt.Sprintf(" to channel %q", s.channel)
	}
	err = fmt.Errorf("%s: %w", what, redactError(err, s.secrets...))
	if after > 0 {
		return true, &retryAfterError{after: after, err: err}
	}
	return retry, err
}

// Slack API errors that say "later", not "never" (https://api.slack.com/methods/chat.postMessage).
var slackRetryableErrors = map[string]bool{
	"ratelimited":         true,
	"internal_error":      true,
	"fatal_error":         true,
	"service_unavailable": true,
	"request_timeout":     true,
}

// classifySlackError maps slack-go's errors to the retry decision. Rate limits come as
// *slack.RateLimitedError from both the bot API and webhooks (HTTP 429 with Retry-After);
// other HTTP failures as slack.StatusCodeError; API refusals (channel_not_found,
// invalid_auth, invalid_blocks) as slack.SlackErrorResponse and are final.
func classifySlackError(err error) (retry bool, after time.Duration) {
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return true, rl.RetryAfter
	}
	var sc slack.StatusCodeError
	if errors.As(err, &sc) {
		return sc.Retryable(), 0
	}
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		return slackRetryableErrors[se.Err], 0
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// A URL that does not parse stays broken; anything else is the network.
		return ue.Op != "parse", 0
	}
	// Unknown: a malformed answer from a proxy, a Retry-After slack-go could not parse.
	// Retrying is bounded by the backoff and costs less than a lost page.
	return true, 0
}
