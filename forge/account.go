package forge

import "context"

// Account is a forge as one signed-in person sees it, through the OAuth
// token they gave the dashboard (package login): who they are, and which
// repositories the forge shows them. What they may do to a repository is
// not asked here but of Lookup.CanPush, with turtles' own credentials, at
// the time of each action: the person's token may carry no scope at all.
//
// Errors wrap ErrPermanent when the forge refused the token (revoked,
// expired): asking again will not help, the person signs in again. Rate
// limits are a *RateLimitError; other errors may be retried.
type Account interface {
	// Login returns the person's name on the forge: the GitHub login, the
	// GitLab username, as Lookup.CanPush takes it.
	Login(ctx context.Context) (string, error)
	// CanRead reports whether the forge shows repo ("owner/name") to the
	// person: false for a repository they may not see and for one that
	// does not exist, which forges answer alike.
	CanRead(ctx context.Context, repo string) (bool, error)
}
