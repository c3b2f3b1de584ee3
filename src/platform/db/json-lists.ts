/**
 * `= any(...)` over a list passed as one JSON array parameter (`?`), e.g.
 * `where id ${anyUuidOf}` with `[JSON.stringify(ids)]`. The list becomes an array first
 * (an init plan), so the planner looks the values up by index: a semi-join against a
 * function scan it estimates at 100 rows made it scan the whole table instead, once per
 * batch, at a cost growing with the table.
 */
export const anyUuidOf = '= any(array(select value::uuid from jsonb_array_elements_text(?::jsonb)))';

/** The same for text values. */
export const anyTextOf = '= any(array(select jsonb_array_elements_text(?::jsonb)))';
