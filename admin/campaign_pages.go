package admin

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// GET /api/campaigns is paged, newest first: ?limit= (1 to 1000, 100 by
// default) campaigns at a time, and ?after= the "next" of the previous
// page, empty on the last. The order is total (creation time, then id),
// so a campaign created while a client pages appears on the first page,
// not twice, and none is skipped. Campaigns of both sources are merged
// here: the store keeps them in two tables, and the number of them is
// bounded by store.campaign_retention.

// pageLimit returns the limit= of a paged list: 1 to maxPageSize,
// defaultPageSize when absent.
func pageLimit(q url.Values) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return defaultPageSize, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxPageSize {
		return 0, badRequest("limit must be a number from 1 to %d, got %q", maxPageSize, v)
	}
	return n, nil
}

// campaignList is the answer of GET /api/campaigns.
type campaignList struct {
	Campaigns []campaignView `json:"campaigns"`
	// Next is the cursor of the next page ("after"); empty on the last.
	Next string `json:"next"`
}

// campaignCursor is where a page of campaigns ends: the creation time
// and id of its last campaign. Clients treat it as opaque.
type campaignCursor struct {
	CreatedAt time.Time `json:"c"`
	ID        string    `json:"i"`
}

func encodeCampaignCursor(c campaignCursor) string {
	b, _ := json.Marshal(c) // a time and a string: can't fail
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCampaignCursor(s string) (campaignCursor, error) {
	var c campaignCursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, err
	}
	if c.ID == "" {
		return c, errors.New("no campaign id")
	}
	return c, nil
}

// compareCampaigns orders campaigns newest first, then by id.
func compareCampaigns(aAt time.Time, aID string, bAt time.Time, bID string) int {
	return cmp.Or(bAt.Compare(aAt), strings.Compare(aID, bID))
}

// campaignPage returns the at most limit campaigns of all that come after
// the cursor (from the first when nil), and the cursor of the next page,
// "" when there is none. It sorts all.
func campaignPage(all []campaignView, after *campaignCursor, limit int) (page []campaignView, next string) {
	slices.SortFunc(all, func(a, b campaignView) int { return compareCampaigns(a.CreatedAt, a.ID, b.CreatedAt, b.ID) })
	from := 0
	if after != nil {
		from, _ = slices.BinarySearchFunc(all, *after, func(v campaignView, c campaignCursor) int {
			if r := compareCampaigns(v.CreatedAt, v.ID, c.CreatedAt, c.ID); r != 0 {
				return r
			}
			return -1 // the cursor's own campaign comes before the page
		})
	}
	page = all[from:min(from+limit, len(all))]
	if from+limit < len(all) {
		last := page[len(page)-1]
		next = encodeCampaignCursor(campaignCursor{CreatedAt: last.CreatedAt, ID: last.ID})
	}
	if page == nil {
		page = []campaignView{}
	}
	return page, next
}
