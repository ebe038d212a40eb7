package junit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/turtles-ci/turtles"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Case
		err  error
	}{
		{
			name: "surefire",
			in: `<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="com.example.MathTest" tests="4" failures="1" errors="1" skipped="1" time="0.5">
  <testcase name="adds" classname="com.example.MathTest" time="0.012"/>
  <testcase name="divides" classname="com.example.MathTest" time="0.2">
    <failure message="expected 2 but was 3" type="AssertionError">stack...</failure>
  </testcase>
  <testcase name="overflows" classname="com.example.MathTest" time="0"><error type="NPE">java.lang.NullPointerException
	at x</error></testcase>
  <testcase name="later" classname="com.example.MathTest"><skipped/></testcase>
</testsuite>`,
			want: []Case{
				{Name: "com.example.MathTest / adds", Outcome: turtles.TestPassed, Duration: 12 * time.Millisecond},
				{Name: "com.example.MathTest / divides", Outcome: turtles.TestFailed, Duration: 200 * time.Millisecond, Message: "expected 2 but was 3"},
				{Name: "com.example.MathTest / overflows", Outcome: turtles.TestFailed, Message: "java.lang.NullPointerException"},
				{Name: "com.example.MathTest / later", Outcome: turtles.TestSkipped},
			},
		},
		{
			name: "pytest",
			in: `<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="3">
<testcase classname="tests.test_api" name="test_get" time="1.5" />
<testcase classname="tests.test_api" name="test_post" time="0.25"><failure message="assert 404 == 200">assert 404 == 200</failure></testcase>
<testcase classname="tests.test_api" name="test_slow" time="0.0"><skipped type="pytest.skip" message="slow">skip</skipped></testcase>
</testsuite></testsuites>`,
			want: []Case{
				{Name: "pytest / tests.test_api / test_get", Outcome: turtles.TestPassed, Duration: 1500 * time.Millisecond},
				{Name: "pytest / tests.test_api / test_post", Outcome: turtles.TestFailed, Duration: 250 * time.Millisecond, Message: "assert 404 == 200"},
				{Name: "pytest / tests.test_api / test_slow", Outcome: turtles.TestSkipped, Message: "slow"},
			},
		},
		{
			name: "nested suites",
			in:   `<testsuites><testsuite name="a"><testsuite name="b"><testcase name="c"/></testsuite></testsuite></testsuites>`,
			want: []Case{{Name: "a / b / c", Outcome: turtles.TestPassed}},
		},
		{name: "not junit", in: `<project><build/></project>`, err: ErrNotJUnit},
		{name: "empty", in: ``, err: ErrNotJUnit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.in))
			if !errors.Is(err, tt.err) {
				t.Fatalf("Parse error = %v, want %v", err, tt.err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.xml")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add(string(b))
	}
	f.Add(`<testsuite><testcase name="x"><failure/></testcase></testsuite>`)
	f.Fuzz(func(t *testing.T, in string) {
		cases, err := Parse(strings.NewReader(in))
		if err != nil && cases != nil {
			t.Errorf("Parse returned cases with an error")
		}
		for _, c := range cases {
			if c.Outcome != turtles.TestPassed && c.Outcome != turtles.TestFailed && c.Outcome != turtles.TestSkipped {
				t.Errorf("bad outcome %q", c.Outcome)
			}
			if c.Duration < 0 {
				t.Errorf("negative duration")
			}
		}
	})
}
