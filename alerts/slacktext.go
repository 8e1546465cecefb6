package alerts

import (
	"html"
	"strings"

	"github.com/slack-go/slack"
)

// SlackText renders the Slack message of an alert as plain text, one block per paragraph: what
// `emergentd replay` prints, so the offline output is the message the channel would get.
func SlackText(a *Alert) string {
	_, blocks := slackMessage(a)
	var b strings.Builder
	for _, blk := range blocks {
		switch v := blk.(type) {
		case *slack.HeaderBlock:
			b.WriteString(v.Text.Text + "\n")
		case *slack.SectionBlock:
			if v.Text != nil {
				b.WriteString(flatten(v.Text.Text) + "\n")
			}
			var fields []string
			for _, f := range v.Fields {
				fields = append(fields, flatten(f.Text))
			}
			if len(fields) > 0 {
				b.WriteString(strings.Join(fields, " · ") + "\n")
			}
		case *slack.ActionBlock:
			for _, el := range v.Elements.ElementSet {
				if btn, ok := el.(*slack.ButtonBlockElement); ok && btn.URL != "" {
					b.WriteString("Graph: " + btn.URL + "\n")
				}
			}
		case *slack.ContextBlock:
			for _, el := range v.ContextElements.Elements {
				if t, ok := el.(*slack.TextBlockObject); ok {
					b.WriteString(flatten(t.Text) + "\n")
				}
			}
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// flatten turns "*Name*\nvalue" mrkdwn into "Name: value" and undoes Slack escaping.
func flatten(s string) string {
	if strings.HasPrefix(s, "*") {
		if name, rest, ok := strings.Cut(s[1:], "*\n"); ok {
			s = name + ": " + rest
		}
	}
	return html.UnescapeString(s)
}
