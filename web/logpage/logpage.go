// Package logpage is the log viewer of an attempt: one static HTML page,
// with its script inline, that reads nothing but files beside it in the
// store ("log", the live chunks "log.chunks/", "result.json",
// "artifacts/..."). Bots store it as "index.html" in every attempt's
// prefix, so that an attempt can be followed and read from S3 (or any
// static file server) with no turtles server involved; the web package
// shows the same viewer on its task pages.
//
// It renders ANSI colours, numbers lines so that failures can link to
// them, lists per-test results (parsed live from TAP in the log, then
// from result.json) and artifacts. It imports only embed; bot and web
// import it.
package logpage

import (
	_ "embed"
	"strings"
)

// Name is the page's name in the attempt's prefix.
const Name = "index.html"

// ContentType of the page.
const ContentType = "text/html; charset=utf-8"

// HTML is the page, script inline. With no data-base on its <body> it
// reads the files beside it.
var HTML = []byte(strings.Replace(page, "/*VIEWER*/", Script, 1))

//go:embed page.html
var page string

// Script is the viewer's script alone, for pages that embed the viewer:
// it fills the elements with ids log, tests, artifacts and status.
//
//go:embed viewer.js
var Script string
