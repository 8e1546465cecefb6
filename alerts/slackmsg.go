package alerts

import (
	"fmt"
	"github.com/emergent-sh/emergent/internal/format"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// Slack's limits on Block Kit text (https://api.slack.com/reference/block-kit/blocks).
const (
	slackHeaderMax  = 150
	slackSectionMax = 3000
	slackFieldMax   = 2000
	slackURLMax     = 3000
)

// Labels shown elsewhere in a message, left out of the group label list.
var slackReservedLabels = map[string]bool{"alertname": true, "kind": true, "rule": true, "severity": true}

// slackMessage renders an alert as Block Kit plus the plain text Slack shows in
// notifications and where blocks cannot be displayed. A resolved alert renders as the
// resolved view of the same message, so that the edited original keeps its numbers.
func slackMessage(a *Alert) (text string, blocks []slack.Block) {
	d := a.Details
	emoji, state := "🔥", "FIRING"
	switch {
	case a.Resolved():
		emoji, state = "✅", "RESOLVED"
	case a.Revision > 0:
		state = "FIRING (worse)"
	}
	title := strings.Join(nonEmpty(kindTitle(a.Labels["kind"]), a.Labels["rule"], groupLabels(a.Labels)), " · ")
	header := truncate(fmt.Sprintf("%s %s: %s", emoji, state, title), slackHeaderMax)
	blocks = append(blocks, slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, header, true, false)))

	var fields []*slack.TextBlockObject
	field := func(name, value string) {
		fields = append(fields, mrkdwn(truncate("*"+name+"*\n"+value, slackFieldMax)))
	}
	if d.ObservedPerSec != 0 || d.ExpectedPerSec != 0 {
		show, expected := perSec, "Expected"
		if d.Counts { // a flush storm: counts in a window, against the count that makes a storm
			show = func(v float64, unit string) string { return sig3(v) + " " + escape(unit) }
			expected = "Storm at"
		}
		field("Observed", show(d.ObservedPerSec, d.Unit))
		field(expected, show(d.ExpectedPerSec, d.Unit))
	}
	if d.UnexplainedPct != 0 {
		field("Unexplained", sig3(d.UnexplainedPct)+" % of the work")
	}
	if d.InboundPerSec != 0 || d.InboundUsualSec != 0 || d.InboundState != "" {
		v := fmt.Sprintf("%s now, usually %s", perSec(d.InboundPerSec, "req"), perSec(d.InboundUsualSec, "req"))
		if d.InboundState != "" {
			v += " (" + escape(d.InboundState) + ")"
		}
		field("Inbound", v)
	}
	if d.Instances > 0 {
		field("Instances", strconv.Itoa(d.Instances))
	}
	if len(fields) > 0 {
		blocks = append(blocks, slack.NewSectionBlock(nil, fields, nil))
	}

	diagnosis := firstNonEmpty(d.Diagnosis, a.Annotations["diagnosis"], a.Annotations["description"])
	if diagnosis != "" {
		blocks = append(blocks, section("Diagnosis", diagnosis))
	}
	if remedy := firstNonEmpty(d.Remedy, a.Annotations["remedy"]); remedy != "" {
		blocks = append(blocks, section("Remedy", remedy))
	}
	if a.GeneratorURL != "" && len(a.GeneratorURL) <= slackURLMax {
		button := slack.NewButtonBlockElement("graph", "graph",
			slack.NewTextBlockObject(slack.PlainTextType, "Open graph", false, false)).WithURL(a.GeneratorURL)
		blocks = append(blocks, slack.NewActionBlock("", button))
	}

	footer := []string{"rule `" + escape(a.Labels["rule"]) + "`"}
	if sev := a.Labels["severity"]; sev != "" {
		footer = append(footer, "severity "+escape(sev))
	}
	footer = append(footer, "started "+slackTime(a.StartsAt))
	if a.Resolved() {
		footer = append(footer, "resolved "+slackTime(a.EndsAt)+" after "+episodeDuration(a))
	}
	blocks = append(blocks, slack.NewContextBlock("", mrkdwn(strings.Join(footer, " · "))))

	summary := escape(firstNonEmpty(a.Annotations["summary"], title))
	if a.Resolved() {
		return "Resolved: " + summary, blocks
	}
	return summary, blocks
}

// slackResolveReply is the short thread reply that marks an episode resolved.
func slackUpdateReply(a *Alert) string {
	return "⬆️ Worse: " + a.Annotations["summary"]
}

func slackResolveReply(a *Alert) string {
	return fmt.Sprintf("✅ Resolved at %s after %s.", slackTime(a.EndsAt), episodeDuration(a))
}

func section(name, text string) *slack.SectionBlock {
	return slack.NewSectionBlock(mrkdwn(truncate("*"+name+"*\n"+escape(text), slackSectionMax)), nil, nil)
}

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}

// escape escapes the three characters Slack's mrkdwn gives meaning to.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func kindTitle(kind string) string {
	switch kind {
	case "self_generated_traffic":
		return "Self-generated traffic"
	case "flush_storm":
		return "Flush storm"
	}
	return kind
}

// groupLabels lists the labels that tell groups apart (service=checkout), sorted.
func groupLabels(labels map[string]string) string {
	var parts []string
	for k, v := range labels {
		if !slackReservedLabels[k] {
			parts = append(parts, k+"="+v)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// perSec formats a rate with its unit, to three significant digits.
func perSec(v float64, unit string) string {
	if unit == "" {
		return sig3(v) + "/s"
	}
	return sig3(v) + " " + escape(unit) + "/s"
}

// sig3 writes a number as every channel does (internal/format).
var sig3 = format.Num

func slackTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func episodeDuration(a *Alert) string {
	return a.EndsAt.Sub(a.StartsAt).Round(time.Second).String()
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func nonEmpty(ss ...string) []string {
	out := ss[:0:0]
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
