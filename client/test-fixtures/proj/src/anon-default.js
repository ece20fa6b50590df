// No binding to find: locate() sends this as a closure.
export default (n) => n * 2;
