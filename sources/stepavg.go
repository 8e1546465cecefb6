package sources

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// QueryRangeStepAveraged runs query over r with its rates read over whole steps
// (StepAveragedQuery): each point is then the mean, over its step, of the values the query
// takes at finer steps. Read at the step alone, a rate window a fraction of the step long
// samples that fraction and misses the work that comes in bursts between.
func (p *Prometheus) QueryRangeStepAveraged(ctx context.Context, query string, r Range) (model.Matrix, Warnings, error) {
	q, err := StepAveragedQuery(query, r.Step)
	if err != nil {
		return nil, nil, err
	}
	return p.QueryRange(ctx, q, r)
}

// StepAveragedQuery is query with the range of every rate() shorter than step widened to step:
// rate(x[2m]) at a 15m step becomes rate(x[15m]). increase(), resets() and changes() count what
// happened between two samples, and windows that only meet at the steps miss what falls between
// two of them: theirs, up to the step, are widened to the step plus their own range,
// overlapping as the finer ones do, and scaled back to their own range (increase(x[5m]) becomes
// increase(x[20m]) * 5/20), so a flush or a restart between two history steps is seen. Other
// range functions are left as they are: a wider max_over_time is not a mean.
func StepAveragedQuery(query string, step time.Duration) (string, error) {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(query)
	if err != nil {
		return "", fmt.Errorf("query %q: %w", query, err)
	}
	return widenRates(expr, step).String(), nil
}

// widenRates rewrites e as StepAveragedQuery says, in place where it can; it returns the node
// that takes e's place.
func widenRates(e parser.Expr, step time.Duration) parser.Expr {
	switch n := e.(type) {
	case *parser.Call:
		if m, ok := rangeArg(n); ok && (m.Range < step && n.Func.Name == "rate" || m.Range <= step && counts[n.Func.Name]) {
			own := m.Range
			m.Range = step
			if counts[n.Func.Name] {
				m.Range += own
				return &parser.ParenExpr{Expr: &parser.BinaryExpr{Op: parser.MUL, LHS: n, RHS: &parser.NumberLiteral{Val: own.Seconds() / m.Range.Seconds()}}}
			}
			return n
		}
		for i, a := range n.Args {
			n.Args[i] = widenRates(a, step)
		}
	case *parser.AggregateExpr:
		n.Expr = widenRates(n.Expr, step)
	case *parser.BinaryExpr:
		n.LHS, n.RHS = widenRates(n.LHS, step), widenRates(n.RHS, step)
	case *parser.ParenExpr:
		n.Expr = widenRates(n.Expr, step)
	case *parser.UnaryExpr:
		n.Expr = widenRates(n.Expr, step)
	case *parser.StepInvariantExpr:
		n.Expr = widenRates(n.Expr, step)
	}
	return e // a subquery reads its range at its own step: left alone
}

// counts are the range functions StepAveragedQuery widens to overlap: counts of what happened
// between two samples in the range.
var counts = map[string]bool{"increase": true, "resets": true, "changes": true}

// rangeArg is the range selector a call's first argument is, if it is one.
func rangeArg(c *parser.Call) (*parser.MatrixSelector, bool) {
	if len(c.Args) == 0 {
		return nil, false
	}
	m, ok := c.Args[0].(*parser.MatrixSelector)
	return m, ok
}
