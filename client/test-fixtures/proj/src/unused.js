// Not imported by anything: staging must leave it out.
export const unused = true;
