// Package junit parses JUnit XML reports (the format of Maven Surefire,
// pytest --junitxml, go-junit-report, Jest and most test runners) into one
// result per test case. The bot imports it to read reports a task left in
// its artifacts; it imports only the standard library.
package junit

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/turtles-ci/turtles"
)

// Case is one test case.
type Case struct {
	// Name is "suite / classname / name", leaving out empty and repeated
	// parts.
	Name     string
	Outcome  turtles.TestOutcome
	Duration time.Duration
	// Message is the failure's or error's message attribute, or the first
	// line of its text.
	Message string
}

// MaxSize is the largest report Parse reads.
const MaxSize = 64 << 20

type testsuites struct {
	Suites []testsuite `xml:"testsuite"`
}

type testsuite struct {
	Name   string      `xml:"name,attr"`
	Cases  []testcase  `xml:"testcase"`
	Suites []testsuite `xml:"testsuite"` // nested suites, as some tools write
}

type testcase struct {
	Name      string   `xml:"name,attr"`
	Classname string   `xml:"classname,attr"`
	Time      string   `xml:"time,attr"`
	Failures  []result `xml:"failure"`
	Errors    []result `xml:"error"`
	Skipped   *result  `xml:"skipped"`
}

type result struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// ErrNotJUnit is returned for XML whose root is neither <testsuites> nor
// <testsuite>: an artifact that merely ends in .xml.
var ErrNotJUnit = errors.New("not a JUnit report")

// Parse reads one report.
func Parse(r io.Reader) ([]Case, error) {
	dec := xml.NewDecoder(io.LimitReader(r, MaxSize))
	dec.Strict = false
	for {
		tok, err := dec.Token()
		if err != nil {
			if err == io.EOF {
				return nil, ErrNotJUnit
			}
			return nil, fmt.Errorf("junit: %w", err)
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch start.Name.Local {
		case "testsuites":
			var ts testsuites
			if err := dec.DecodeElement(&ts, &start); err != nil {
				return nil, fmt.Errorf("junit: %w", err)
			}
			var out []Case
			for _, s := range ts.Suites {
				out = s.cases(out, "")
			}
			return out, nil
		case "testsuite":
			var s testsuite
			if err := dec.DecodeElement(&s, &start); err != nil {
				return nil, fmt.Errorf("junit: %w", err)
			}
			return s.cases(nil, ""), nil
		default:
			return nil, ErrNotJUnit
		}
	}
}

func (s testsuite) cases(out []Case, parent string) []Case {
	suite := join(parent, s.Name)
	for _, c := range s.Cases {
		out = append(out, c.result(suite))
	}
	for _, sub := range s.Suites {
		out = sub.cases(out, suite)
	}
	return out
}

func (c testcase) result(suite string) Case {
	name := suite
	if c.Classname != "" && c.Classname != suite {
		name = join(name, c.Classname)
	}
	name = join(name, c.Name)
	r := Case{Name: name, Outcome: turtles.TestPassed}
	if f, err := strconv.ParseFloat(strings.TrimSpace(c.Time), 64); err == nil && f > 0 && f < 1e9 {
		r.Duration = time.Duration(f * float64(time.Second))
	}
	switch {
	case len(c.Failures) > 0:
		r.Outcome, r.Message = turtles.TestFailed, message(c.Failures[0])
	case len(c.Errors) > 0:
		r.Outcome, r.Message = turtles.TestFailed, message(c.Errors[0])
	case c.Skipped != nil:
		r.Outcome, r.Message = turtles.TestSkipped, message(*c.Skipped)
	}
	return r
}

func message(r result) string {
	m := strings.TrimSpace(r.Message)
	if m == "" {
		m, _, _ = strings.Cut(strings.TrimSpace(r.Text), "\n")
	}
	if len(m) > 500 {
		m = m[:500]
	}
	return m
}

func join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + " / " + b
}
