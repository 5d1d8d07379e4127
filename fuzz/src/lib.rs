//! Helpers shared by the fuzz targets: turning the first bytes of an input into a plan for
//! cutting the rest into chunks, so every target sees its data split at fuzzer-chosen points.

/// The size of one chunk, from one plan byte: `0` is an empty chunk, `1..=0xBF` that many
/// bytes, and `0xC0..=0xFF` 1 KiB to 64 KiB, so both byte-by-byte feeding and large reads
/// are easy for the fuzzer to reach.
pub fn chunk_size(byte: u8) -> usize {
    match byte {
        0..=0xBF => usize::from(byte),
        _ => usize::from(byte - 0xBF) * 1024,
    }
}

/// Takes `count` plan bytes off the front of `input` (fewer if it is shorter) and returns the
/// chunk sizes they stand for, and what is left.
pub fn take_sizes(input: &[u8], count: usize) -> (Vec<usize>, &[u8]) {
    let count = count.min(input.len());
    let (plan, rest) = input.split_at(count);
    (plan.iter().map(|&b| chunk_size(b)).collect(), rest)
}

/// Most chunks [`chunks`] cuts; the rest of the data then comes as one last chunk. Feeding
/// byte by byte (or in empty chunks) costs a rescan of the buffered partial line per chunk in
/// the reply parser, so an unbounded count makes a few inputs thousands of times slower than
/// the rest and slows the whole fuzzing run down.
pub const MAX_CHUNKS: usize = 2048;

/// Cuts `data` into chunks whose sizes cycle through `sizes`. The chunks joined are exactly
/// `data`; empty chunks may appear (they are part of the contract being tested). With no
/// usable size the data comes as one chunk; past [`MAX_CHUNKS`] the rest comes as one chunk.
pub fn chunks<'d>(data: &'d [u8], sizes: &[usize]) -> Vec<&'d [u8]> {
    if sizes.iter().all(|&s| s == 0) {
        return vec![data];
    }
    let mut out = Vec::new();
    let mut rest = data;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        if out.len() + 1 == MAX_CHUNKS {
            out.push(rest);
            break;
        }
        let (head, tail) = rest.split_at(size.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_join_to_the_data() {
        let data: Vec<u8> = (0..=255).collect();
        let data: Vec<u8> = data.repeat(20);
        for sizes in [
            &[][..],
            &[0],
            &[1],
            &[0, 3],
            &[200, 0, 7],
            &[0xC0],
            &[0, 0, 1],
        ] {
            let sizes: Vec<usize> = sizes.iter().map(|&b| chunk_size(b)).collect();
            let cut = chunks(&data, &sizes);
            assert!(cut.len() <= MAX_CHUNKS);
            assert_eq!(cut.concat(), data);
        }
    }
}
