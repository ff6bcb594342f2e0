export const OUT_ALIAS_LIMIT = 32;
