package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/alerts"
	"github.com/emergent-sh/emergent/config"
	commoncfg "github.com/prometheus/common/config"
	"github.com/slack-go/slack"
)

// deliveryBound is how many evaluation intervals after one channel has a transition every
// other channel has it too: one evaluation queues it to every receiver, each on its own queue.
const deliveryBound = 3

// worsenFactor is how much worse an episode must get for an update (the detector's 3x).
const worsenFactor = 3

// hookEpisode is one episode as the webhook received it (its alerts share labels and
// startsAt), and the Slack thread of the same episode.
type hookEpisode struct {
	firing   hookPost
	updates  []hookPost // later firing posts: the episode got worse
	resolved *hookPost
	slack    *slackThread
}

// hookEpisodes groups a service's webhook alerts into episodes, in arrival order, and lists
// what breaks "one post per transition, a resolve last and only after a firing".
func hookEpisodes(posts []hookPost) ([]*hookEpisode, []string) {
	var eps []*hookEpisode
	var problems []string
	byStart := map[int64]*hookEpisode{}
	for _, p := range posts {
		ep := byStart[p.StartsAt.UnixNano()]
		switch {
		case ep == nil && p.Status == "resolved":
			problems = append(problems, fmt.Sprintf("the webhook got a resolve of an episode starting %s never posted firing", p.RawStartsAt))
		case ep == nil:
			ep = &hookEpisode{firing: p}
			byStart[p.StartsAt.UnixNano()] = ep
			eps = append(eps, ep)
		case labelKey(ep.firing.Labels) != labelKey(p.Labels):
			problems = append(problems, fmt.Sprintf("episode starting %s: labels %s, then %s", p.RawStartsAt, labelKey(ep.firing.Labels), labelKey(p.Labels)))
		case ep.resolved != nil:
			problems = append(problems, fmt.Sprintf("episode starting %s: a %s post after its resolve: %q", p.RawStartsAt, p.Status, p.Annotations["summary"]))
		case p.Status == "resolved":
			ep.resolved = &p
		default:
			ep.updates = append(ep.updates, p)
		}
	}
	return eps, problems
}

// slackView is a Slack message's blocks as sent (mrkdwn-escaped): "*Name*\nvalue" fields and
// sections by name.
type slackView struct {
	header   string
	fields   map[string]string
	sections map[string]string
	context  string
}

func viewOf(m slackMessage) (slackView, error) {
	v := slackView{fields: map[string]string{}, sections: map[string]string{}}
	var blocks slack.Blocks
	if err := json.Unmarshal([]byte(m.blocks), &blocks); err != nil {
		return v, fmt.Errorf("blocks of %s do not decode: %w", m.render(), err)
	}
	named := func(s string) (string, string) {
		name, value, ok := strings.Cut(s, "\n")
		if !ok || !strings.HasPrefix(name, "*") || !strings.HasSuffix(name, "*") {
			return "", s
		}
		return strings.Trim(name, "*"), value
	}
	for _, blk := range blocks.BlockSet {
		switch blk := blk.(type) {
		case *slack.HeaderBlock:
			v.header = blk.Text.Text
		case *slack.SectionBlock:
			if blk.Text != nil {
				name, value := named(blk.Text.Text)
				v.sections[name] = value
			}
			for _, f := range blk.Fields {
				name, value := named(f.Text)
				v.fields[name] = value
			}
		case *slack.ContextBlock:
			for _, e := range blk.ContextElements.Elements {
				if t, ok := e.(*slack.TextBlockObject); ok {
					v.context += t.Text
				}
			}
		}
	}
	return v, nil
}

// slackThread is one episode in Slack: the firing post, the replies in its thread and the
// edits of the post.
type slackThread struct {
	post    slackMessage
	worse   []slackMessage // "⬆️ Worse: …" replies
	resolve []slackMessage // "✅ Resolved …" replies
	edits   []slackMessage // chat.update of the post other than the resolve
	resEdit []slackMessage // chat.update of the post to "Resolved: …"
}

var slackStarted = regexp.MustCompile(`started (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)`)

// threads returns Slack's threads about svc by the start in their firing post's footer.
func (f *slackFake) threads(svc string) (map[string]*slackThread, []string) {
	var problems []string
	byTS := map[string]*slackThread{}
	out := map[string]*slackThread{}
	for _, m := range f.about(svc) {
		switch {
		case m.method == "chat.postMessage" && m.threadTS == "":
			v, err := viewOf(m)
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			started := slackStarted.FindStringSubmatch(v.context)
			if started == nil {
				problems = append(problems, "Slack's firing post has no start in its footer: "+m.render())
				continue
			}
			if prev, ok := out[started[1]]; ok {
				problems = append(problems, fmt.Sprintf("Slack paged the episode starting %s twice: %s and %s", started[1], prev.post.render(), m.render()))
				continue
			}
			th := &slackThread{post: m}
			byTS[m.ts], out[started[1]] = th, th
		case m.method == "chat.postMessage":
			th := byTS[m.threadTS]
			switch {
			case th == nil:
				problems = append(problems, "a Slack reply outside any firing post's thread: "+m.render())
			case strings.HasPrefix(m.text, "⬆️ Worse: "):
				th.worse = append(th.worse, m)
			case strings.HasPrefix(m.text, "✅ Resolved"):
				th.resolve = append(th.resolve, m)
			default:
				problems = append(problems, "a Slack reply that is neither an update nor a resolve: "+m.render())
			}
		case m.method == "chat.update":
			th := byTS[m.ts]
			switch {
			case th == nil:
				problems = append(problems, "a Slack edit of no firing post: "+m.render())
			case strings.HasPrefix(m.text, "Resolved:"):
				th.resEdit = append(th.resEdit, m)
			default:
				th.edits = append(th.edits, m)
			}
		}
	}
	return out, problems
}

// slackEscape is Slack's mrkdwn escaping of the three characters it gives meaning to.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func slackUnescape(s string) string {
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
}

func slackTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// The words' grammar: summaries and descriptions of both kinds, and Slack's fields.
var (
	sgFiringRe   = regexp.MustCompile(`^(.+?): (.+) (\S+)/s \((\S+) per inbound request\), expected (\S+)/s(?: \([^()]*\))?; (-?\d+)% unexplained by inbound (\S+)/s$`)
	sgResolvedRe = regexp.MustCompile(`^(.+?): (.+) back to (\S+)/s, expected (\S+)/s(?: \([^()]*\))?; inbound (\S+)/s$`)
	sgDescRe     = regexp.MustCompile(`^Observed (\S+) (.+)/s, expected (\S+)/s \((-?\d+)% unexplained\)\. Inbound (\S+)/s, usual (\S+)/s \(([^()]*)\)\.(?: (\d+) instances doing the work\.)?(?: Why: (.*)\.)?$`)
	stormRe      = regexp.MustCompile(`^(.+?): (\S+) flushes and (\S+) keyspace collapses in the last (\S+) \(storm at (\S+)\)(?:; .*)?$`)
	stormDescRe  = regexp.MustCompile(`^(\S+) flushes and (\S+) keyspace collapses in (\S+)\.(?: Why: (.*)\.)?$`)
	rateFieldRe  = regexp.MustCompile(`^(\S+) (.+)/s$`)
	countFieldRe = regexp.MustCompile(`^(\S+) (.+)$`)
	pctFieldRe   = regexp.MustCompile(`^(\S+) % of the work$`)
	inFieldRe    = regexp.MustCompile(`^(\S+) req/s now, usually (\S+) req/s(?: \((.*)\))?$`)
)

// number parses a number as the words render it ("n/a" is NaN).
func number(s string) float64 {
	if s == "n/a" {
		return math.NaN()
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.Inf(-1) // equal to nothing the words say
	}
	return f
}

// same reports whether two renderings are the same number: both are three significant digits
// of one value, so they parse equal.
func same(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }

// observed is the work an alert's summary states: the rate, or a storm's flushes or collapses.
func observed(a hookAlert) (float64, bool) {
	s := a.Annotations["summary"]
	switch {
	case a.Labels["kind"] == "flush_storm":
		if m := stormRe.FindStringSubmatch(s); m != nil {
			return math.Max(number(m[2]), number(m[3])), true
		}
	case a.Status == "resolved":
		if m := sgResolvedRe.FindStringSubmatch(s); m != nil {
			return number(m[3]), true
		}
	default:
		if m := sgFiringRe.FindStringSubmatch(s); m != nil {
			return number(m[3]), true
		}
	}
	return 0, false
}

// numberProblems checks that an alert's words state the same numbers: the summary, the
// description and, where given, the Slack message of the same transition (its fields).
func numberProblems(a hookAlert, v *slackView) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	sum, desc, diag := a.Annotations["summary"], a.Annotations["description"], a.Annotations["diagnosis"]
	// field reads one of Slack's fields; Slack leaves out fields whose numbers are all zero,
	// so a missing one is a disagreement only where the words state a number (required).
	field := func(name string, re *regexp.Regexp, required bool) []string {
		if v == nil {
			return nil
		}
		f, ok := v.fields[name]
		if !ok {
			if required {
				bad("Slack's message has no %s field (fields %q) for %q", name, v.fields, sum)
			}
			return nil
		}
		m := re.FindStringSubmatch(slackUnescape(f))
		if m == nil {
			bad("Slack's %s field %q does not read as %s", name, f, re)
		}
		return m
	}
	if a.Labels["kind"] == "flush_storm" {
		if a.Status == "resolved" {
			if !strings.Contains(sum, "flushes stopped") {
				bad("resolved flush-storm summary does not say the flushes stopped: %q", sum)
			}
			return problems
		}
		s, d := stormRe.FindStringSubmatch(sum), stormDescRe.FindStringSubmatch(desc)
		if s == nil || d == nil {
			bad("flush-storm words do not read as a storm: summary %q (%v), description %q (%v)", sum, s != nil, desc, d != nil)
			return problems
		}
		if !same(number(s[2]), number(d[1])) || !same(number(s[3]), number(d[2])) || s[4] != d[3] {
			bad("summary %q and description %q state different flushes, collapses or window", sum, desc)
		}
		if d[4] != diag {
			bad("description's why %q is not the diagnosis %q", d[4], diag)
		}
		unit := "flushes or keyspace collapses in " + s[4]
		if f := field("Observed", countFieldRe, true); f != nil && (!same(number(f[1]), math.Max(number(s[2]), number(s[3]))) || f[2] != unit) {
			bad("Slack's Observed %q, the summary %q (%s)", f[0], sum, unit)
		}
		if f := field("Storm at", countFieldRe, true); f != nil && (!same(number(f[1]), number(s[5])) || f[2] != unit) {
			bad("Slack's Storm at %q, the summary %q", f[0], sum)
		}
		return problems
	}

	d := sgDescRe.FindStringSubmatch(desc)
	if d == nil {
		bad("description does not read as observed, expected and inbound: %q", desc)
		return problems
	}
	dObs, dUnit, dExp, dPct, dIn, dUsual, dState, dInst, dWhy := number(d[1]), d[2], number(d[3]), number(d[4]), number(d[5]), number(d[6]), d[7], d[8], d[9]
	if dWhy != diag {
		bad("description's why %q is not the diagnosis %q", dWhy, diag)
	}
	var unit string
	var obs, exp, in float64
	if a.Status == "resolved" {
		s := sgResolvedRe.FindStringSubmatch(sum)
		if s == nil {
			bad("resolved summary does not say the work is back (\"<unit> back to <n>/s, expected …; inbound …\"): %q", sum)
			return problems
		}
		unit, obs, exp, in = s[2], number(s[3]), number(s[4]), number(s[5])
	} else {
		s := sgFiringRe.FindStringSubmatch(sum)
		if s == nil {
			bad("firing summary does not read as \"<unit> <n>/s (<n> per inbound request), expected …; <n>%% unexplained by inbound <n>/s\": %q", sum)
			return problems
		}
		unit, obs, exp, in = s[2], number(s[3]), number(s[5]), number(s[7])
		if !same(number(s[6]), dPct) {
			bad("summary %q says %s%% unexplained, description %q %s%%", sum, s[6], desc, d[4])
		}
		if perReq := number(s[4]); in > 0 && math.Abs(perReq-obs/in) > 0.015*obs/in {
			bad("summary %q: %s per inbound request is not %g/s over %g/s", sum, s[4], obs, in)
		}
	}
	if unit != dUnit || !same(obs, dObs) || !same(exp, dExp) || !same(in, dIn) {
		bad("summary %q and description %q state different work, expectation or inbound", sum, desc)
	}
	if v == nil {
		return problems
	}
	shown := obs != 0 || exp != 0 // Slack shows both or neither
	if f := field("Observed", rateFieldRe, shown); f != nil && (!same(number(f[1]), obs) || f[2] != unit) {
		bad("Slack's Observed %q, the summary %q", f[0], sum)
	}
	if f := field("Expected", rateFieldRe, shown); f != nil && (!same(number(f[1]), exp) || f[2] != unit) {
		bad("Slack's Expected %q, the summary %q", f[0], sum)
	}
	if u, ok := v.fields["Unexplained"]; ok {
		if m := pctFieldRe.FindStringSubmatch(slackUnescape(u)); m == nil || math.Abs(number(m[1])-dPct) > 0.55 {
			bad("Slack's Unexplained %q, the description %s%%", u, d[4])
		}
	} else if dPct != 0 {
		bad("Slack's message shows no Unexplained share, the description %s%%", d[4])
	}
	if f := field("Inbound", inFieldRe, in != 0 || dUsual != 0 || dState != ""); f != nil && (!same(number(f[1]), in) || !same(number(f[2]), dUsual) || f[3] != dState) {
		bad("Slack's Inbound %q, the description %q", f[0], desc)
	}
	if got := slackUnescape(v.fields["Instances"]); got != dInst {
		bad("Slack shows %q instances, the description %q", got, dInst)
	}
	return problems
}

// compareMessage checks that one Slack message and the webhook's alert of the same transition
// say the same: text, diagnosis, times and numbers. text is what Slack's text must be; header
// what its header must begin with.
func compareMessage(p hookPost, m slackMessage, text, header string) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if m.text != text {
		bad("Slack's text %q, the webhook's summary %q (want %q)", m.text, p.Annotations["summary"], text)
	}
	v, err := viewOf(m)
	if err != nil {
		return append(problems, err.Error())
	}
	if !strings.HasPrefix(v.header, header) || !strings.Contains(v.header, "service="+p.Labels["service"]) {
		bad("Slack's header %q, want %q… naming service=%s", v.header, header, p.Labels["service"])
	}
	if got, want := v.sections["Diagnosis"], slackEscape(p.Annotations["diagnosis"]); got != want {
		bad("Slack's diagnosis %q, the webhook's %q", got, p.Annotations["diagnosis"])
	}
	if want := "started " + slackTime(p.StartsAt); !strings.Contains(v.context, want) {
		bad("Slack's footer %q lacks %q", v.context, want)
	}
	if p.Status == "resolved" {
		want := fmt.Sprintf("resolved %s after %s", slackTime(p.EndsAt), p.EndsAt.Sub(p.StartsAt).Round(time.Second))
		if !strings.Contains(v.context, want) {
			bad("Slack's footer %q lacks %q", v.context, want)
		}
	}
	return append(problems, numberProblems(p.hookAlert, &v)...)
}

// wordsAgree compares, at this moment, every episode of alertname for svc as the webhook
// received it with Slack's thread and Alertmanager's alert of the same episode, and returns
// the episodes, or everything that disagrees. With needResolved the latest episode must have
// resolved in the webhook.
func (w *world) wordsAgree(alertname, svc string, needResolved bool) ([]*hookEpisode, error) {
	want := alertFor(alertname, svc)
	problems := w.hook.broken()
	eps, ps := hookEpisodes(w.hook.alerts(want))
	problems = append(problems, ps...)
	threads, ps := w.slack.threads(svc)
	problems = append(problems, ps...)
	if len(eps) == 0 {
		problems = append(problems, "the webhook got no firing post")
	} else if needResolved && eps[len(eps)-1].resolved == nil {
		problems = append(problems, "the webhook got no resolve of the latest episode")
	}
	seen := w.watcher.find(want)
	if len(seen) > 1 {
		problems = append(problems, fmt.Sprintf("Alertmanager listed %d label sets for one alert", len(seen)))
	}
	for _, ep := range eps {
		fire := ep.firing
		bad := func(format string, args ...any) {
			problems = append(problems, fmt.Sprintf("episode starting %s: ", fire.RawStartsAt)+fmt.Sprintf(format, args...))
		}

		// Alertmanager: the same label set, and an episode starting at the same time.
		switch {
		case len(seen) == 0:
			bad("Alertmanager never listed the alert")
		case labelKey(seen[0].alert.Labels) != labelKey(fire.Labels):
			bad("Alertmanager lists labels %s, the webhook got %s", labelKey(seen[0].alert.Labels), labelKey(fire.Labels))
		case !containsTime(seen[0].starts, fire.StartsAt):
			bad("Alertmanager listed startsAt %v, the webhook got %s", seen[0].starts, fire.RawStartsAt)
		}

		th := threads[slackTime(fire.StartsAt)]
		delete(threads, slackTime(fire.StartsAt))
		if th == nil {
			bad("Slack has no firing post of it (webhook summary %q)", fire.Annotations["summary"])
			continue
		}
		ep.slack = th
		problems = append(problems, prefixed("episode starting "+fire.RawStartsAt+", firing in Slack: ",
			compareMessage(fire, th.post, slackEscape(fire.Annotations["summary"]), "🔥 FIRING: "))...)

		// Updates: each a "⬆️ Worse:" reply and an edit of the firing post, the numbers 3x worse.
		if len(th.worse) != len(ep.updates) || len(th.edits) != len(ep.updates) {
			bad("the webhook got %d updates, Slack %d \"⬆️ Worse:\" replies and %d edits", len(ep.updates), len(th.worse), len(th.edits))
		}
		prev := fire
		for i, u := range ep.updates {
			sum := u.Annotations["summary"]
			if i < len(th.worse) && th.worse[i].text != "⬆️ Worse: "+slackEscape(sum) {
				bad("update %d: Slack's reply %q, the webhook's summary %q", i+1, th.worse[i].text, sum)
			}
			if i < len(th.edits) {
				problems = append(problems, prefixed(fmt.Sprintf("episode starting %s, update %d in Slack: ", fire.RawStartsAt, i+1),
					compareMessage(u, th.edits[i], slackEscape(sum), "🔥 FIRING (worse): "))...)
			} else {
				problems = append(problems, prefixed(fmt.Sprintf("episode starting %s, update %d: ", fire.RawStartsAt, i+1), numberProblems(u.hookAlert, nil))...)
			}
			was, ok1 := observed(prev.hookAlert)
			now, ok2 := observed(u.hookAlert)
			if !ok1 || !ok2 || now < worsenFactor*was*0.99 {
				bad("update %d says %q, not %dx the %q it follows", i+1, sum, worsenFactor, prev.Annotations["summary"])
			}
			prev = u
		}

		r := ep.resolved
		if r == nil {
			if len(th.resolve)+len(th.resEdit) > 0 {
				bad("Slack resolved it (%d replies, %d edits), the webhook did not", len(th.resolve), len(th.resEdit))
			}
			continue
		}
		// The resolve: the work back, not the firing numbers; Slack's reply and edit, and
		// Alertmanager's end, the same.
		sum := r.Annotations["summary"]
		if sum == fire.Annotations["summary"] || (r.Labels["kind"] == "self_generated_traffic" && !strings.Contains(sum, " back to ")) {
			bad("the resolve's summary %q does not say the work is back (firing: %q)", sum, fire.Annotations["summary"])
		}
		if was, ok1 := observed(prev.hookAlert); r.Labels["kind"] == "self_generated_traffic" {
			if now, ok2 := observed(r.hookAlert); !ok1 || !ok2 || now >= was {
				bad("the resolve %q states no less work than the last firing words %q", sum, prev.Annotations["summary"])
			}
		}
		wantReply := fmt.Sprintf("✅ Resolved at %s after %s.", slackTime(r.EndsAt), r.EndsAt.Sub(r.StartsAt).Round(time.Second))
		if len(th.resolve) != 1 || th.resolve[0].text != wantReply {
			var got []string
			for _, m := range th.resolve {
				got = append(got, m.text)
			}
			bad("Slack's resolve replies %q, want one %q (the webhook's endsAt %s)", got, wantReply, r.RawEndsAt)
		}
		if len(th.resEdit) != 1 {
			bad("Slack edited the post to resolved %d times, want once", len(th.resEdit))
		} else {
			problems = append(problems, prefixed("episode starting "+fire.RawStartsAt+", resolved in Slack: ",
				compareMessage(*r, th.resEdit[0], "Resolved: "+slackEscape(sum), "✅ RESOLVED: "))...)
		}
		var amEnd time.Time
		for _, post := range w.proxies["primary"].posted(want) {
			for _, a := range post.alerts {
				if a.StartsAt.Equal(r.StartsAt) && !a.EndsAt.IsZero() && !a.EndsAt.After(post.at) && amEnd.IsZero() {
					amEnd = a.EndsAt
				}
			}
		}
		switch {
		case amEnd.IsZero():
			bad("Alertmanager has not accepted the resolve the webhook got")
		case !amEnd.Equal(r.EndsAt):
			bad("Alertmanager's endsAt %s, the webhook's %s", amEnd.UTC().Format(time.RFC3339Nano), r.RawEndsAt)
		case len(seen) == 1 && seen[0].present && seen[0].alert.StartsAt.Equal(r.StartsAt):
			bad("Alertmanager still lists it active, the webhook got its resolve")
		}
	}
	for started, th := range threads {
		problems = append(problems, fmt.Sprintf("Slack paged an episode starting %s the webhook never got: %s", started, th.post.render()))
	}
	if len(problems) > 0 {
		return eps, errors.New(strings.Join(problems, "\n"))
	}
	return eps, nil
}

func prefixed(prefix string, problems []string) []string {
	out := make([]string, len(problems))
	for i, p := range problems {
		out[i] = prefix + p
	}
	return out
}

func containsTime(ts []time.Time, t time.Time) bool {
	for _, x := range ts {
		if x.Equal(t) {
			return true
		}
	}
	return false
}

// checkWords waits, at most deliveryBound evaluation intervals, until the webhook, Slack and
// Alertmanager agree on every episode of alertname for svc (see wordsAgree), then checks that
// the first firing words, in the webhook and in Slack, name each of firingWords.
func (w *world) checkWords(t *testing.T, alertname, svc string, needResolved bool, firingWords ...string) []*hookEpisode {
	t.Helper()
	var eps []*hookEpisode
	waitFor(t, deliveryBound*evalInterval, "the webhook, Slack and Alertmanager to agree on "+svc+"'s "+alertname, func() error {
		var err error
		eps, err = w.wordsAgree(alertname, svc, needResolved)
		return err
	})
	first := eps[0]
	v, err := viewOf(first.slack.post)
	if err != nil {
		t.Fatal(err)
	}
	for _, word := range firingWords {
		if !strings.Contains(first.firing.Annotations["diagnosis"], word) {
			t.Errorf("%s: the webhook's first firing diagnosis does not name %q: %q", svc, word, first.firing.Annotations["diagnosis"])
		}
		if !strings.Contains(v.sections["Diagnosis"], slackEscape(word)) {
			t.Errorf("%s: Slack's first firing diagnosis does not name %q: %q", svc, word, v.sections["Diagnosis"])
		}
	}
	return eps
}

// logWords logs what every channel said of an episode.
func logWords(t *testing.T, svc string, eps []*hookEpisode) {
	t.Helper()
	for _, ep := range eps {
		t.Logf("%s: episode starting %s: webhook, Slack and Alertmanager agree; firing: %s", svc, ep.firing.RawStartsAt, ep.firing.Annotations["summary"])
		for i, u := range ep.updates {
			t.Logf("%s: update %d (%s after firing): %s", svc, i+1, u.at.Sub(ep.firing.at).Round(100*time.Millisecond), u.Annotations["summary"])
		}
		if len(ep.updates) == 0 {
			t.Logf("%s: no update: the episode never got %dx worse than paged", svc, worsenFactor)
		}
		if r := ep.resolved; r != nil {
			t.Logf("%s: resolved at %s: %s", svc, r.RawEndsAt, r.Annotations["summary"])
		}
	}
}

// checkSecretKept fails if the webhook URL's secret shows in the daemon's logs, metrics or
// served configuration (never printing it).
func (w *world) checkSecretKept(t *testing.T, name string) {
	t.Helper()
	d := w.daemons[name]
	if strings.Contains(d.logs.String(), w.hook.secret()) {
		t.Errorf("emergentd %s's logs show the webhook URL", name)
	}
	for _, path := range []string{"/metrics", "/api/v1/status/config"} {
		resp, err := http.Get(d.web.URL + path)
		if err != nil {
			t.Error(err)
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s (%v)", path, resp.Status, err)
			continue
		}
		if strings.Contains(string(body), w.hook.secret()) {
			t.Errorf("emergentd %s's %s shows the webhook URL", name, path)
		}
	}
}

// TestWordsOffline needs no stack: it delivers an episode's firing, an update and its resolve
// through the daemon's alerts manager to the suite's webhook sink and Slack fake, as the
// primary daemon would, and checks that wordsAgree accepts what the real renderers send and
// catches a channel that disagrees. (The suite's timings seldom give an update.)
func TestWordsOffline(t *testing.T) {
	w := &world{t: t, slack: newSlackFake(t), hook: newWebhookSink(t), watcher: newAMWatcher(""),
		proxies: map[string]*amProxy{"primary": {name: "primary"}}}
	receivers := []config.Receiver{
		{Name: hookReceiver, Type: config.ReceiverWebhook, URL: commoncfg.Secret(w.hook.url())},
		{Name: "oncall-slack", Type: config.ReceiverSlack, Token: slackToken, Channel: slackChannel, APIURL: w.slack.apiURL()},
	}
	routes := []config.Route{{Receiver: hookReceiver}, {Receiver: "oncall-slack"}}
	m, err := alerts.NewManager(config.Global{ExternalLabels: map[string]string{"cluster": "e2e"}}, receivers, routes, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Minute).Truncate(evalInterval).UTC()
	labels := map[string]string{"alertname": "SelfGeneratedTraffic", "kind": "self_generated_traffic", "rule": "token-minting",
		"severity": "warning", "service": "checkout"}
	const diagnosis = "2 instances do the work independently; it tracks instance count, not demand → the cache is not shared"
	step := func(obs, inbound float64, end time.Time, revision int) *alerts.Alert {
		sum := fmt.Sprintf(`service="checkout": token mints %g/s (%g per inbound request), expected 0/s; 100%% unexplained by inbound %g/s`, obs, obs/inbound, inbound)
		diag, state := diagnosis, "normal"
		if !end.IsZero() {
			sum = fmt.Sprintf(`service="checkout": token mints back to 0/s, expected 0/s; inbound %g/s`, inbound)
			diag = "token mints back within what inbound and the instances explain (0/s against 0/s expected)"
			obs = 0
		}
		pct := map[bool]float64{true: 100, false: 0}[obs > 0]
		return &alerts.Alert{
			Labels: labels, StartsAt: start, EndsAt: end, Revision: revision,
			GeneratorURL: "http://127.0.0.1:9090/graph?g0.expr=x",
			Annotations: map[string]string{"summary": sum, "diagnosis": diag, "remedy": "Share the cache.",
				"description": fmt.Sprintf("Observed %g token mints/s, expected 0/s (%.0f%% unexplained). Inbound %g/s, usual %g/s (%s). 2 instances doing the work. Why: %s.",
					obs, pct, inbound, inbound, state, diag)},
			Details: alerts.Details{Unit: "token mints", ObservedPerSec: obs, UnexplainedPct: pct, InboundPerSec: inbound,
				InboundUsualSec: inbound, InboundState: state, Instances: 2, Diagnosis: diag, Remedy: "Share the cache."},
		}
	}
	end := start.Add(30 * time.Second)
	full := maps.Clone(labels)
	full["cluster"] = "e2e"
	// Alertmanager listed the episode, and accepted its resolve.
	w.watcher.seen[labelKey(full)] = &seenAlert{alert: amAlert{Labels: full, StartsAt: start}, starts: []time.Time{start}}
	w.proxies["primary"].posts = []amPost{{at: time.Now(), alerts: []amAlert{{Labels: full, StartsAt: start, EndsAt: end}}}}

	for _, c := range []struct {
		a       *alerts.Alert
		updates int
	}{{step(2, 4, time.Time{}, 0), 0}, {step(6.5, 4, time.Time{}, 1), 1}, {step(0, 4, end, 1), 1}} {
		m.Update(time.Now(), []*alerts.Alert{c.a})
		waitFor(t, 5*time.Second, "the channels to agree", func() error {
			eps, err := w.wordsAgree("SelfGeneratedTraffic", "checkout", c.a.Resolved())
			if err == nil && len(eps[0].updates) != c.updates {
				err = fmt.Errorf("%d updates, want %d", len(eps[0].updates), c.updates)
			}
			return err
		})
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, m := range w.slack.all() {
		t.Logf("Slack: %s", m.render())
	}

	// A channel that says otherwise is caught: each message in turn with other numbers in its
	// text, and the firing post with other numbers in its fields.
	msgs := w.slack.all()
	for i := range len(msgs) + 1 {
		tampered := slices.Clone(msgs)
		if i < len(msgs) {
			tampered[i].text = strings.NewReplacer("/s", "0/s", " 30s", " 31s").Replace(msgs[i].text)
		} else {
			i = 0
			tampered[i].blocks = strings.Replace(msgs[i].blocks, "2 token mints/s", "20 token mints/s", 1)
		}
		w.slack.mu.Lock()
		w.slack.messages = tampered
		w.slack.mu.Unlock()
		_, err := w.wordsAgree("SelfGeneratedTraffic", "checkout", true)
		if err == nil {
			t.Errorf("wordsAgree accepts Slack saying %s", tampered[i].render())
			continue
		}
		t.Logf("caught: %s", strings.SplitN(err.Error(), "\n", 2)[0])
	}
}
