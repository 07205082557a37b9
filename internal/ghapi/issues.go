package ghapi

import (
	"context"
	"fmt"
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

// Permission is the user's permission on the repository: admin, maintain,
// write, triage, read or none.
func (c *Client) Permission(ctx context.Context, repo Repo, user string) (string, error) {
	p, _, err := c.gh.Repositories.GetPermissionLevel(ctx, repo.Owner, repo.Name, user)
	if err != nil {
		if StatusCode(err) == 404 {
			return "none", nil // not a collaborator at all
		}
		return "", fmt.Errorf("failed to get %q's permission on %s: %w", user, repo, err)
	}
	// permission is the legacy four-level value (admin, write, read, none);
	// role_name, where the server sends it, also knows maintain and triage.
	// go-github v62 does not decode role_name; permission is enough to rank.
	return p.GetPermission(), nil
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
