"""Storage adapters. The only place in soniq that holds SQL; none of it imports Django."""
