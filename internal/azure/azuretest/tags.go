package azuretest

import (
	"fmt"
	"net/http"
	"strings"
)

// tagsSuffix names the tags resource every ARM resource has
// ({scope}/providers/Microsoft.Resources/tags/default).
const tagsSuffix = "/providers/microsoft.resources/tags/default"

// tagsScope returns the resource ID a tags-resource path is about.
func tagsScope(path string) (string, bool) {
	if !strings.HasSuffix(strings.ToLower(path), tagsSuffix) {
		return "", false
	}
	return path[:len(path)-len(tagsSuffix)], true
}

// serveTags answers the tags resource of a resource: GET reads its tags, PATCH
// changes them with the REST API's rules ("Tags - Update At Scope": operation
// Replace replaces the whole set, Merge adds new names and updates existing
// ones, Delete removes the given names, or only name/value pairs that match;
// at most 50 tags at the end, else 400 InvalidTag). The answer is the
// TagsResource: id, name "default", type, properties.tags.
func (e *Emulator) serveTags(w http.ResponseWriter, c *call, scope string) *apiError {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.resources[strings.ToLower(scope)]
	if !ok {
		return newAPIError(http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("The Resource '%s' was not found.", scope))
	}
	tags := map[string]any{}
	if t, ok := r.doc["tags"].(map[string]any); ok {
		for k, v := range t {
			tags[k] = v
		}
	}
	switch c.r.Method {
	case http.MethodGet:
	case http.MethodPatch:
		given := mapAt(c.doc, "properties", "tags")
		switch op := c.str("operation"); strings.ToLower(op) {
		case "replace":
			tags = map[string]any{}
			for k, v := range given {
				tags[k] = v
			}
		case "merge":
			for k, v := range given {
				tags[k] = v
			}
		case "delete":
			for k, v := range given {
				if cur, ok := tags[k]; ok && (v == "" || v == cur) {
					delete(tags, k)
				}
			}
		default:
			return newAPIError(http.StatusBadRequest, "InvalidRequestContent", fmt.Sprintf("The value '%s' of operation is not valid: Replace, Merge or Delete.", op))
		}
		if len(tags) > 50 {
			return newAPIError(http.StatusBadRequest, "InvalidTag", fmt.Sprintf("The resource '%s' would have %d tags; at most 50 are allowed.", scope, len(tags)))
		}
		r.doc["tags"] = tags
	default:
		return methodNotAllowed(c)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": r.id + "/providers/Microsoft.Resources/tags/default", "name": "default", "type": "Microsoft.Resources/tags",
		"properties": map[string]any{"tags": tags},
	})
	return nil
}
