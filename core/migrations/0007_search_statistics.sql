-- 0007: steadier plans for library search. With the default statistics target
-- (100 histogram entries) one sampled row containing the search term made the
-- planner expect ~1 % of a library to match; with LIMIT 21 it then walked the
-- (user, created_at) index filtering every row instead of asking the trigram
-- index, i.e. read the whole library for a rare term (seen in CI: 1 run in
-- ~100 of JobsTest.LibraryQueriesUseIndexesAt100kRows). With 1,000 entries one
-- sampled hit means 0.1 %, and the trigram index is chosen.
ALTER INDEX uploads_search ALTER COLUMN 1 SET STATISTICS 1000;
