/* Inline sort/filter script of the report: th[data-key] sorts by td[data-value], input.table-filter[data-for] filters. */
