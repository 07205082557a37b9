package ghapi

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/google/go-github/v62/github"
)

// Comment is an issue or pull request comment.
type Comment struct {
	ID        int64
	Body      string
	User      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

func commentFrom(c *github.IssueComment) Comment {
	return Comment{
		ID: c.GetID(), Body: c.GetBody(), User: c.GetUser().GetLogin(),
		CreatedAt: c.GetCreatedAt().Time, UpdatedAt: c.GetUpdatedAt().Time,
	}
}

// permissionAnswer is the part of "Get repository permissions for a user"
// the bot reads. go-github v62 decodes only the legacy permission, so the
// request is made with NewRequest, as Dispatch does for its newer field.
type permissionAnswer struct {
	Permission string `json:"permission"`
	RoleName   string `json:"role_name"`
	User       struct {
		Permissions map[string]bool `json:"permissions"`
	} `json:"user"`
}

// Roles are the base repository roles, weakest first.
var Roles = []string{"read", "triage", "write", "maintain", "admin"}

// Permission is the user's base role on the repository: admin, maintain,
// write, triage, read, or none when they are not a collaborator.
//
// "Get repository permissions for a user" (REST docs) has two fields: the
// legacy permission, where "the maintain role is mapped to write and the
// triage role is mapped to read", and role_name, "the full role name,
// including custom roles". A built-in role_name is the answer. A custom
// role inherits a base role, which the user's permissions flags (pull,
// triage, push, maintain, admin) show; the legacy permission is the last
// resort (a GitHub Enterprise Server that predates role_name).
func (c *Client) Permission(ctx context.Context, repo Repo, user string) (string, error) {
	u := fmt.Sprintf("repos/%s/%s/collaborators/%s/permission", url.PathEscape(repo.Owner), url.PathEscape(repo.Name), url.PathEscape(user))
	req, err := c.gh.NewRequest("GET", u, nil)
	if err != nil {
		return "", fmt.Errorf("failed to build the permission request: %w", err)
	}
	var p permissionAnswer
	if _, err := c.gh.Do(ctx, req, &p); err != nil {
		if StatusCode(err) == 404 {
			return "none", nil // not a collaborator at all
		}
		return "", fmt.Errorf("failed to get %q's permission on %s: %w", user, repo, err)
	}
	return baseRole(p), nil
}

func baseRole(p permissionAnswer) string {
	if slices.Contains(Roles, p.RoleName) {
		return p.RoleName
	}
	flags := map[string]string{"admin": "admin", "maintain": "maintain", "push": "write", "triage": "triage", "pull": "read"}
	for i := len(Roles) - 1; i >= 0; i-- {
		for flag, role := range flags {
			if role == Roles[i] && p.User.Permissions[flag] {
				return role
			}
		}
	}
	if slices.Contains(Roles, p.Permission) {
		return p.Permission
	}
	return "none"
}

// React adds a reaction (eyes, rocket, +1, -1, ...) to an issue comment.
// GitHub answers 200 for a reaction that already exists, so it is idempotent.
func (c *Client) React(ctx context.Context, repo Repo, commentID int64, content string) error {
	_, _, err := c.gh.Reactions.CreateIssueCommentReaction(ctx, repo.Owner, repo.Name, commentID, content)
	if err != nil {
		return fmt.Errorf("failed to add reaction %q to comment %d: %w", content, commentID, err)
	}
	return nil
}

// Comments lists the comments of an issue updated at or after since (zero:
// all), oldest first, following pagination.
func (c *Client) Comments(ctx context.Context, repo Repo, issue int, since time.Time) ([]Comment, error) {
	opts := &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: 100}}
	if !since.IsZero() {
		opts.Since = &since
	}
	var out []Comment
	for {
		page, resp, err := c.gh.Issues.ListComments(ctx, repo.Owner, repo.Name, issue, opts)
		if err != nil {
			return nil, fmt.Errorf("failed to list the comments of %s#%d: %w", repo, issue, err)
		}
		for _, ic := range page {
			out = append(out, commentFrom(ic))
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

// Comment gets one issue comment.
func (c *Client) Comment(ctx context.Context, repo Repo, id int64) (Comment, error) {
	ic, _, err := c.gh.Issues.GetComment(ctx, repo.Owner, repo.Name, id)
	if err != nil {
		return Comment{}, fmt.Errorf("failed to get comment %d: %w", id, err)
	}
	return commentFrom(ic), nil
}

// CreateComment posts a comment on an issue or pull request.
func (c *Client) CreateComment(ctx context.Context, repo Repo, issue int, body string) (Comment, error) {
	ic, _, err := c.gh.Issues.CreateComment(ctx, repo.Owner, repo.Name, issue, &github.IssueComment{Body: &body})
	if err != nil {
		return Comment{}, fmt.Errorf("failed to comment on %s#%d: %w", repo, issue, err)
	}
	return commentFrom(ic), nil
}

// EditComment replaces a comment's body.
func (c *Client) EditComment(ctx context.Context, repo Repo, id int64, body string) error {
	if _, _, err := c.gh.Issues.EditComment(ctx, repo.Owner, repo.Name, id, &github.IssueComment{Body: &body}); err != nil {
		return fmt.Errorf("failed to edit comment %d: %w", id, err)
	}
	return nil
}

// DeleteComment deletes a comment.
func (c *Client) DeleteComment(ctx context.Context, repo Repo, id int64) error {
	if _, err := c.gh.Issues.DeleteComment(ctx, repo.Owner, repo.Name, id); err != nil {
		return fmt.Errorf("failed to delete comment %d: %w", id, err)
	}
	return nil
}

// DefaultBranch is the repository's default branch.
func (c *Client) DefaultBranch(ctx context.Context, repo Repo) (string, error) {
	r, _, err := c.gh.Repositories.Get(ctx, repo.Owner, repo.Name)
	if err != nil {
		return "", fmt.Errorf("failed to get repository %s: %w", repo, err)
	}
	return r.GetDefaultBranch(), nil
}
